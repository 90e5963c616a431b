"""Zip archives as image stores, and extraction that cannot escape its folder.

Kaggle's image zips (Carvana's train.zip: 5,088 files, test.zip: 100,064; Severstal's one zip of both
folders) are read in place instead of extracted, so DVC tracks a few large files and the data is on disk once.
Each process opens its own handle, which makes an archive safe to share with DataLoader workers.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import shutil
import stat
import warnings
import zipfile
import zlib
from pathlib import Path

from pipeline.errors import UserError


class ArchiveError(UserError):
    """An archive that is missing, corrupt or unsafe; the message names the file and the fix."""


def _check_member(archive: Path, info: zipfile.ZipInfo) -> None:
    name = info.filename
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or ".." in parts or ":" in parts[0]:
        raise ArchiveError(f"{archive} holds an unsafe path {name!r} (absolute or with '..'); refusing to read it")
    if stat.S_ISLNK(info.external_attr >> 16):
        raise ArchiveError(f"{archive} holds a symbolic link {name!r}; refusing to read it")


def open_zip(path: Path) -> zipfile.ZipFile:
    """Open a zip with a clear error for a missing or truncated file."""
    if not path.is_file():
        raise ArchiveError(f"{path} is missing; run `dvc repro download` to fetch it")
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as err:
        raise ArchiveError(
            f"{path} is not a readable zip ({err}); it is probably truncated: delete it and run "
            f"`dvc repro download` again"
        ) from None


class ImageArchive:
    """The files of a zip (or of one folder inside it), addressed by base name (`00087a6bd4dc_01.jpg`), readable
    from any process."""

    def __init__(self, path: Path, folder: str | None = None):
        self.path = Path(path)
        with open_zip(self.path) as z:
            infos = [i for i in z.infolist() if not i.is_dir()]
        for info in infos:
            _check_member(self.path, info)
        if folder is not None:  # e.g. train_images/ of a whole-competition zip
            infos = [i for i in infos if i.filename.startswith(folder.rstrip("/") + "/")]
        self._members = {posixpath.basename(i.filename): i.filename for i in infos}
        self._crc = {posixpath.basename(i.filename): (i.CRC, i.file_size) for i in infos}
        if len(self._members) != len(infos):
            raise ArchiveError(f"{self.path} holds two files with the same name in different folders")
        self._zip: zipfile.ZipFile | None = None
        self._pid = -1

    def __getstate__(self):  # DataLoader workers re-open the file themselves
        state = self.__dict__.copy()
        state["_zip"], state["_pid"] = None, -1
        return state

    def __len__(self) -> int:
        return len(self._members)

    def __contains__(self, name: str) -> bool:
        return name in self._members

    def names(self) -> list[str]:
        return sorted(self._members)

    def content(self, names: list[str]) -> str:
        """A hash of the CRC-32 and size of each named member, read from the zip's directory: other pixels
        under the same names change it, at no decoding cost."""
        h = hashlib.sha256()
        for name in names:
            crc, size = self._crc.get(name, (0, -1))
            h.update(f"{name}\0{crc:08x}\0{size}\n".encode())
        return h.hexdigest()[:16]

    def read(self, name: str) -> bytes:
        """The bytes of one member, or ArchiveError naming the archive when it is absent."""
        member = self._members.get(name)
        if member is None:
            raise ArchiveError(
                f"{name} is not in {self.path}; the file is incomplete: delete it and run `dvc repro download`"
            )
        if self._zip is None or self._pid != os.getpid():
            self._zip = open_zip(self.path)
            self._pid = os.getpid()
        try:
            return self._zip.read(member)
        except (zipfile.BadZipFile, OSError, EOFError) as err:
            raise ArchiveError(
                f"{self.path}: cannot read {member} ({err}); the zip is damaged, download it again"
            ) from None


class ImageFolder:
    """The image files of a folder, addressed by name as `ImageArchive` addresses a zip's members: how Kaggle mounts
    a competition's test images in a kernel (`/kaggle/input/<slug>/test_images/`)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        if not self.path.is_dir():
            raise ArchiveError(f"{self.path} is not a folder of images")
        self._sizes = {f.name: f.stat() for f in self.path.iterdir() if f.is_file() and not f.name.startswith(".")}

    def __len__(self) -> int:
        return len(self._sizes)

    def __contains__(self, name: str) -> bool:
        return name in self._sizes

    def names(self) -> list[str]:
        return sorted(self._sizes)

    def content(self, names: list[str]) -> str:
        """A hash of each named file's size and time (what a kernel's own resumed run needs to trust its shards)."""
        h = hashlib.sha256()
        for name in names:
            st = self._sizes.get(name)
            h.update(f"{name}\0{st.st_size if st else -1}\0{st.st_mtime_ns if st else 0}\n".encode())
        return h.hexdigest()[:16]

    def read(self, name: str) -> bytes:
        if name not in self._sizes:
            raise ArchiveError(f"{name} is not in {self.path}, which the sample submission says holds it")
        return (self.path / name).read_bytes()


def write_member(archive: zipfile.ZipFile, name: str, data: bytes, date_time=(1980, 1, 1, 0, 0, 0)) -> None:
    """Store `data` as `name`, uncompressed (images are compressed already) and with a fixed time, so that the same
    files make the same bytes."""
    info = zipfile.ZipInfo(name, date_time=date_time)
    info.compress_type = zipfile.ZIP_STORED
    info.external_attr = 0o644 << 16
    archive.writestr(info, data)


TASKS_PER_WORKER = 8  # parallel tasks per process when checking an archive: a moving progress bar, few opens
MIN_CHUNK = 1000  # members worth a task of their own (a small archive is checked in this process)


def crc_chunk(members: int, jobs: int) -> int:
    """Members per task: every task opens the zip, which parses its whole directory (100k entries for test.zip),
    so the number of tasks is kept to a few per worker however many members there are."""
    workers = (os.cpu_count() or 1) if jobs < 0 else jobs
    return max(MIN_CHUNK, -(-members // (workers * TASKS_PER_WORKER)))


def _first_damaged(path: Path, members: list[str]) -> tuple[int, str | None]:
    """(members read, the first whose bytes fail their CRC-32 or cannot be read)."""
    with open_zip(path) as z:
        for name in members:
            try:
                with z.open(name) as f:
                    while f.read(1 << 20):
                        pass
            except (zipfile.BadZipFile, OSError, EOFError, zlib.error):
                return len(members), name
    return len(members), None


def check_crcs(path: Path, jobs: int = -1, chunk: int | None = None) -> int:
    """Read every member once, checking its CRC-32, in parallel with a progress bar: a damaged file is named
    at download time, not hours into training. Returns the number of members."""
    from joblib import Parallel, delayed
    from tqdm import tqdm

    with open_zip(path) as z:
        members = [i.filename for i in z.infolist() if not i.is_dir()]
    chunk = chunk or crc_chunk(len(members), jobs)
    chunks = [members[i : i + chunk] for i in range(0, len(members), chunk)]
    tasks = (delayed(_first_damaged)(path, part) for part in chunks)
    with tqdm(total=len(members), desc=f"check {path.name}", unit="file") as bar, warnings.catch_warnings():
        # stopping at the first damaged member cancels the other tasks, which joblib would report in a warning
        warnings.filterwarnings("ignore", r"\d+ tasks which were still being processed", UserWarning)
        results = Parallel(n_jobs=jobs if len(chunks) > 1 else 1, return_as="generator")(tasks)
        try:
            for done, damaged in results:
                if damaged is not None:
                    raise ArchiveError(
                        f"{path}: {damaged} is damaged (its bytes do not match the zip's CRC-32); delete "
                        f"{path.name} and run `dvc repro download` to fetch it again"
                    )
                bar.update(done)
        finally:
            results.close()
    return len(members)


def extract_member(archive: Path, member_name: str, dest: Path) -> Path:
    """Extract one file of `archive` to `dest` (a file path), refusing unsafe member paths. A `dest` already there
    is kept only when it holds the member's bytes (its size and CRC-32), never for its name or its date."""
    with open_zip(archive) as z:
        matches = [i for i in z.infolist() if posixpath.basename(i.filename) == member_name and not i.is_dir()]
        if not matches:
            raise ArchiveError(f"{archive} does not contain {member_name}; it is not the file Kaggle serves")
        info = matches[0]
        _check_member(archive, info)
        if dest.is_file() and dest.stat().st_size == info.file_size and _crc32(dest) == info.CRC:
            return dest
        tmp = dest.with_name(dest.name + ".part")
        with z.open(info) as src, open(tmp, "wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
    tmp.replace(dest)
    return dest


def _crc32(path: Path) -> int:
    crc = 0
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            crc = zlib.crc32(block, crc)
    return crc
