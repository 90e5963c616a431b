"""A competition's files: listed, downloaded once, resumed after an interruption, checked for completeness."""

from __future__ import annotations

import errno
import shutil
import zipfile
from functools import partial
from pathlib import Path

from pipeline.kaggle_api import PARTIAL_SUFFIX, RETRY_DELAYS, KaggleError, call, connect


def list_files(api, competition: str) -> dict[str, int]:
    """{file name: size in bytes} of a competition's data files, every page."""
    files: dict[str, int] = {}
    token = None
    while True:
        page = call(
            partial(api.competition_list_files, competition, page_token=token, page_size=200),
            competition,
            "list the competition's files",
        )
        for f in page.files:
            files[f.name] = int(f.total_bytes or 0)
        token = page.next_page_token
        if not token:
            return files


def is_complete(path: Path, size: int) -> bool:
    """A downloaded file is complete when its size matches and the client left no resume marker."""
    return path.is_file() and path.stat().st_size == size and not Path(str(path) + PARTIAL_SUFFIX).exists()


def bundle_name(competition: str) -> str:
    """The file Kaggle's "download all" makes: every file of the competition in one zip."""
    return f"{competition}.zip"


def _complete(path: Path, size: int | None) -> bool:
    """A listed file of that size, or a bundle (size unknown before it comes) that opens as a zip."""
    if size is not None:
        return is_complete(path, size)
    return path.is_file() and not Path(str(path) + PARTIAL_SUFFIX).exists() and zipfile.is_zipfile(path)


def download(competition: str, names: list[str], dest: Path, delays: tuple[float, ...] = RETRY_DELAYS) -> list[Path]:
    """Download `names` from a competition into `dest`, skipping complete files and resuming partial ones.

    `<competition>.zip`, unless the competition lists a file of that name, is Kaggle's "download all": the one zip
    of every file (Severstal's 18,000 images are fetched that way, not one by one).
    """
    api = connect()
    listing = list_files(api, competition)
    bundle = bundle_name(competition)
    sizes: dict[str, int | None] = dict(listing)
    if bundle in names and bundle not in listing:
        sizes[bundle] = None
    absent = [n for n in names if n not in sizes]
    if absent:
        raise KaggleError(
            f"competition {competition!r} has no file {absent[0]}; it serves: "
            f"{', '.join(sorted(listing)) or 'nothing'}. Is download.competition right?"
        )
    dest.mkdir(parents=True, exist_ok=True)
    todo = [n for n in names if not _complete(dest / n, sizes[n])]
    for name in names:
        if name not in todo:
            print(f"{name}: complete ({(dest / name).stat().st_size:,} bytes), skipped")
    expected = {n: sizes[n] if sizes[n] is not None else sum(listing.values()) for n in todo}  # a bundle: its files
    remaining = sum(expected[n] - ((dest / n).stat().st_size if (dest / n).is_file() else 0) for n in todo)
    free = shutil.disk_usage(dest).free
    if remaining > free:
        raise KaggleError(
            f"not enough disk space in {dest}: {remaining / 1e9:.1f} GB still to download, {free / 1e9:.1f} GB free; "
            f"free some space (or point data/ at a larger disk) and run again"
        )
    for name in todo:
        _fetch(api, competition, name, dest, sizes[name], delays)
    return [dest / n for n in names]


def _fetch(api, competition: str, name: str, dest: Path, size: int | None, delays: tuple[float, ...]) -> None:
    """One file (or the bundle), checked for completeness after the client is done."""
    path = dest / name
    fetch = (
        partial(api.competition_download_file, competition, name, path=str(dest), quiet=False)
        if size is not None
        else partial(api.competition_download_files, competition, path=str(dest), quiet=False)
    )
    try:
        call(fetch, competition, f"download {name}", delays)
    except OSError as err:
        if err.errno == errno.ENOSPC:
            raise KaggleError(f"disk full while writing {path}; free some space and run again to resume") from None
        raise
    except ValueError as err:  # the client's size check after a short read
        raise KaggleError(f"{name} arrived incomplete ({err}); run again to resume the download") from None
    if not _complete(path, size):
        have = path.stat().st_size if path.is_file() else 0
        wanted = f" of {size:,}" if size is not None else ""
        raise KaggleError(f"{name} is incomplete ({have:,}{wanted} bytes) after the download; run again to resume")
