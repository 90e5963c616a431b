"""Fill the competition folder from one of three sources: the demo, Kaggle, or a local folder.

Kaggle downloads live in the store (pipeline.download.store), outside every workspace, where an interrupted
25 GB download resumes and a queued experiment finds it; the folder holds hard links to them. A stamp file
records which source filled the folder and whether it finished; switching sources never discards a Kaggle
download, finished or not (it stays in the store), nor files the pipeline did not put there, and an import that
fails leaves the previous data as it was.
"""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from contextlib import nullcontext
from pathlib import Path

from tqdm import tqdm

from pipeline import params, paths
from pipeline.competitions import Competition, competition_class
from pipeline.competitions.archive import ArchiveError, check_crcs, extract_member
from pipeline.competitions.carvana import SLUG as CARVANA
from pipeline.competitions.carvana import demo as carvana_demo
from pipeline.competitions.severstal import SLUG as SEVERSTAL
from pipeline.competitions.severstal import demo as severstal_demo
from pipeline.download import store
from pipeline.errors import UserError
from pipeline.kaggle_api import downloads
from pipeline.params import DownloadParams

STAMP = "SOURCE.json"
DEMOS = {CARVANA: carvana_demo.generate, SEVERSTAL: severstal_demo.generate}  # each competition's miniature, by slug


class SourceError(UserError):
    """The data could not be put in place; the message says how to fix it."""


def _stamp(p: DownloadParams) -> dict:
    if p.source == "demo":
        return {
            "source": "demo",
            "competition": competition_class(p.competition, p.source).__name__,
            **{k: getattr(p.demo, k) for k in ("seed", "train", "test", "width", "height", "multiclass")},
        }
    if p.source == "kaggle":
        return {"source": "kaggle", "competition": p.competition, "hq": p.hq}
    return {"source": "local", "path": str(Path(p.local.path).resolve()), "layout": p.local.layout, "hq": p.hq}


def _previous(out: Path) -> dict | None:
    """The stamp of what fills `out` now (None when empty); refuse a folder of files this pipeline did not put
    there, which it must never delete."""
    path = out / STAMP
    if path.is_file():
        return json.loads(path.read_text())
    foreign = sorted(c.name for c in out.iterdir()) if out.is_dir() else []
    if foreign:
        raise SourceError(
            f"{out} holds files this pipeline did not put there ({', '.join(foreign[:3])}"
            f"{', ...' if len(foreign) > 3 else ''}); it will not delete them: move them elsewhere (e.g. "
            f"`mv {out} {out}-mine`) and import them with download.source=local and download.local.path=<that folder>"
        )
    return None


def _same(old: dict | None, stamp: dict) -> bool:
    return old is not None and {k: v for k, v in old.items() if k != "complete"} == stamp


def _keep_downloads(out: Path, old: dict | None) -> None:
    """A Kaggle download made before the store existed (files in data/raw itself) goes to the store first: switching
    source or competition then discards nothing."""
    if old is None or old.get("source") != "kaggle":
        return
    files = [f for f in out.iterdir() if f.is_file() and f.name != STAMP] if out.is_dir() else []
    kept = store.keep(files, old.get("competition", ""))
    if kept:
        print(f"{out}: the Kaggle files of {old.get('competition')} went to {store.store_dir(old['competition'])}")


def fetch(p: DownloadParams, out: Path, truth_dir: Path) -> dict[str, int]:
    """Put the competition named by the params into `out`, verify it, and return its counts.

    A Kaggle download goes to the store (pipeline.download.store), where an interruption resumes and where every
    workspace finds it; `out` holds hard links to it. Every source fills a sibling folder that replaces `out` only
    once verified: a failed import leaves the previous data as it was.
    """
    if p.source == "local":  # every step below reads the folder the user meant, from a queued run's copy too
        p = params.replace(p, local=params.replace(p.local, path=str(paths.from_project(p.local.path))))
    stamp = _stamp(p)
    if p.source == "local":
        src, dest = Path(p.local.path).resolve(), out.resolve()
        if src == dest or dest in src.parents:
            raise SourceError(
                f"download.local.path {p.local.path} is {out} itself or inside it: the import would replace the "
                f"files it reads. Move your files elsewhere (e.g. `mv {out} {out}-mine`) and point the param there"
            )
    old = _previous(out)
    _keep_downloads(out, old)
    in_place = _same(old, stamp)
    target = out if in_place else out.with_name(out.name + ".incoming")
    if not in_place:
        shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True, exist_ok=True)
    (target / STAMP).write_text(json.dumps({**stamp, "complete": False}, indent=2) + "\n")
    try:
        with store.locked(store.store_dir(p.competition)) if p.source == "kaggle" else nullcontext():
            counts = _fill(p, target, truth_dir)
    except BaseException:
        if not in_place:
            shutil.rmtree(target, ignore_errors=True)
        raise
    (target / STAMP).write_text(json.dumps({**stamp, "complete": True}, indent=2) + "\n")
    if not in_place:
        previous = out.with_name(out.name + ".previous")
        shutil.rmtree(previous, ignore_errors=True)
        if out.exists():
            out.rename(previous)
        target.rename(out)
        shutil.rmtree(previous, ignore_errors=True)
    return counts


def _fill(p: DownloadParams, out: Path, truth_dir: Path) -> dict[str, int]:
    comp = competition_class(p.competition, p.source)
    checked = False
    if p.source == "demo":
        d = p.demo
        height, width = (d.height, d.width) if d.width else comp.native_size
        DEMOS[comp.slug](
            out,
            truth_dir,
            seed=d.seed,
            train=d.train,
            test=d.test,
            width=width,
            height=height,
            multiclass=d.multiclass,
        )
    elif p.source == "kaggle":
        checked = _link_download(p, comp, out)
    elif p.local.layout == "kaggle":
        import_kaggle_folder(p, out, comp)
    else:
        from pipeline.download import layouts

        layouts.import_folder(p.local, out, comp)
    # the checks of the real data's names and counts guard a local copy that claims to be the competition; Kaggle's
    # own files are the competition (and their zips are CRC-checked below)
    real = p.source == "local" and p.competition == comp.slug
    counts = comp(out, p.hq, strict=real).verify()
    if not checked:
        for name in comp.layout(p.hq)[0]:
            check_crcs(out / name)
    if p.source == "kaggle":
        store.mark_checked(store.store_dir(p.competition), comp.kaggle_files(p.hq))
    return counts


def _link_download(p: DownloadParams, comp: type[Competition], out: Path) -> bool:
    """Link the competition's Kaggle files from the store into `out`, downloading what the store lacks; True when
    the store held them all, unchanged since they were checked (no request to Kaggle, no CRC check again)."""
    names, where = comp.kaggle_files(p.hq), store.store_dir(p.competition)
    checked = store.is_checked(where, names)
    if checked:
        print(f"{where}: the {len(names)} files of {p.competition} are there, checked: nothing to download")
    else:
        downloads.download(p.competition, names, where)
    for name in names:
        link_or_copy(where / name, out / name)
    comp.unpack(out)
    return checked


def link_or_copy(src: Path, dst: Path) -> None:
    """Hard-link `src` to `dst` (no second copy on disk); copy when they are on different disks. A `dst` already
    there is kept only when it holds `src`'s bytes: the same file (a link), or a copy compared byte for byte; a file
    replaced at the source by another of the same name and size is linked or copied again."""
    if dst.exists():
        if dst.stat().st_ino == src.stat().st_ino or _same_bytes(src, dst):
            return
        dst.unlink()
    try:
        os.link(src, dst)
    except OSError:
        print(f"{src} is on another disk than {dst}: copying it ({src.stat().st_size / 1e9:.1f} GB)")
        tmp = dst.with_name(dst.name + ".part")
        shutil.copyfile(src, tmp)
        tmp.replace(dst)


def _same_bytes(a: Path, b: Path) -> bool:
    """Whether two files on different inodes hold the same bytes: read only when their sizes agree."""
    import filecmp

    return a.stat().st_size == b.stat().st_size and filecmp.cmp(a, b, shallow=False)


def pack_folders(folders: list[Path], archive: Path) -> None:
    """Store extracted image folders as one zip (no recompression, each folder's name kept inside), so later stages
    read one file. An archive already there is kept only when its members are the folders' files, byte for byte
    (their CRC-32s against the zip's): an image replaced under the same name is packed again."""
    listed = []
    for folder in folders:
        files = sorted(f for f in folder.iterdir() if f.is_file() and not f.name.startswith("."))
        if not files:
            raise SourceError(f"{folder} holds no files; point download.local.path at the folder with the data")
        listed += [(f, f"{folder.name}/{f.name}") for f in files]
    if archive.is_file() and _packed(listed, archive):
        return
    tmp = archive.with_name(archive.name + ".part")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as z:
        for f, name in tqdm(listed, desc=f"pack {archive.name}", unit="file"):
            z.write(f, name)
    tmp.replace(archive)


def _packed(listed: list[tuple[Path, str]], archive: Path) -> bool:
    """Whether `archive` holds exactly these files under these names, each with the CRC-32 of its bytes."""
    import zlib

    try:
        with zipfile.ZipFile(archive) as z:
            crcs = {i.filename: i.CRC for i in z.infolist() if not i.is_dir()}
    except zipfile.BadZipFile:
        return False
    if set(crcs) != {name for _, name in listed}:
        return False
    for f, name in tqdm(listed, desc=f"compare {archive.name}", unit="file", leave=False):
        if zlib.crc32(f.read_bytes()) != crcs[name]:
            return False
    return True


def import_kaggle_folder(p: DownloadParams, out: Path, comp: type[Competition]) -> None:
    """A folder with Kaggle's files: zips are hard-linked, extracted folders packed, CSVs copied."""
    src = Path(p.local.path)
    if not src.is_dir():
        raise SourceError(f"download.local.path {src} is not a folder; point it at the folder with Kaggle's files")
    zips, required, optional = comp.layout(p.hq)
    for archive, folders in zips.items():
        if (src / archive).is_file():
            link_or_copy(src / archive, out / archive)
        elif all((src / f).is_dir() for f in folders):
            pack_folders([src / f for f in folders], out / archive)
        else:
            wanted = " and ".join(f"{f}/" for f in folders)
            raise SourceError(f"{src} has neither {archive} nor {wanted}; it is not the {comp.title} data folder")
    provided = [name for name in required + optional if _import_csv(src, name, out)]
    for name in set(required + optional) - set(provided):
        (out / name).unlink(missing_ok=True)  # the source's no longer: from its zip below, or not at all
    comp.unpack(out, provided)  # the CSV files a whole-competition zip holds
    missing = [name for name in required if not (out / name).is_file()]
    if missing:
        raise SourceError(f"{src} has neither {missing[0]} nor {missing[0]}.zip")


def _import_csv(src: Path, name: str, out: Path) -> bool:
    """A CSV file of the folder, as it is or zipped as Kaggle serves it; False when the folder has neither."""
    if (src / name).is_file():
        shutil.copyfile(src / name, out / name)
    elif (src / f"{name}.zip").is_file():
        try:
            extract_member(src / f"{name}.zip", name, out / name)
        except ArchiveError as err:
            raise SourceError(str(err)) from None
    else:
        return False
    return True
