"""Fill the competition folder from one of three sources: the demo, Kaggle, or a local folder.

The folder persists between runs (a DVC `persist: true` out) so that an interrupted 25 GB download
resumes instead of starting over. A stamp file records which source filled it; switching sources
never silently overwrites a real download.
"""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from pathlib import Path

from tqdm import tqdm

from pipeline import competition, demo, kaggle_api
from pipeline.archive import ArchiveError, extract_member
from pipeline.errors import UserError
from pipeline.params import DownloadParams

STAMP = "SOURCE.json"


class SourceError(UserError):
    """The data could not be put in place; the message says how to fix it."""


def _stamp(p: DownloadParams) -> dict:
    if p.source == "demo":
        return {
            "source": "demo",
            **{k: getattr(p.demo, k) for k in ("seed", "train_cars", "test_cars", "width", "height", "multiclass")},
        }
    if p.source == "kaggle":
        return {"source": "kaggle", "competition": p.competition, "hq": p.hq}
    return {"source": "local", "path": str(Path(p.local.path).resolve()), "layout": p.local.layout, "hq": p.hq}


def _prepare(out: Path, stamp: dict) -> None:
    """Empty `out` when it holds the demo or another local import; refuse to discard a download."""
    path = out / STAMP
    if not path.is_file():
        return
    old = json.loads(path.read_text())
    if old == stamp:
        return
    if (
        old.get("source") == "kaggle"
        and stamp.get("competition") != old.get("competition")
        or (old.get("source") == "kaggle" and stamp["source"] != "kaggle")
    ):
        raise SourceError(
            f"{out} holds the Kaggle download of {old.get('competition')}; switching download.source/competition "
            f"would discard it. Move it away first (e.g. `mv {out} {out}-{old.get('competition')}`), then run again"
        )
    if old.get("source") == "kaggle":
        return  # same competition, other quality: add the other files beside the existing ones
    for child in out.iterdir():
        if child.is_dir():
            shutil.rmtree(child)
        else:
            child.unlink()


def fetch(p: DownloadParams, out: Path, truth_dir: Path) -> dict[str, int]:
    """Put the competition named by the params into `out`, verify it, and return its counts."""
    stamp = _stamp(p)
    out.mkdir(parents=True, exist_ok=True)
    _prepare(out, stamp)
    (out / STAMP).unlink(missing_ok=True)  # until verified, the folder is not trusted
    if p.source == "demo":
        d = p.demo
        demo.generate(
            out,
            truth_dir,
            seed=d.seed,
            train_cars=d.train_cars,
            test_cars=d.test_cars,
            width=d.width,
            height=d.height,
            multiclass=d.multiclass,
        )
    elif p.source == "kaggle":
        kaggle_api.download(p.competition, competition.kaggle_files(p.hq), out)
        _extract_csvs(out)
    elif p.local.layout == "kaggle":
        import_kaggle_folder(p, out)
    else:
        from pipeline import layouts

        layouts.import_folder(p.local, out)
    slug = p.competition if p.source != "demo" else "demo"
    counts = competition.verify(out, p.hq, slug)
    (out / STAMP).write_text(json.dumps(stamp, indent=2) + "\n")
    return counts


def _extract_csvs(out: Path) -> None:
    """Kaggle serves the CSV files zipped; extract each next to its zip, safely."""
    for name in competition.CSV_FILES:
        archive = out / f"{name}.zip"
        target = out / name
        if archive.is_file() and (not target.is_file() or target.stat().st_mtime < archive.stat().st_mtime):
            extract_member(archive, name, target)


def link_or_copy(src: Path, dst: Path) -> None:
    """Hard-link `src` to `dst` (no second copy on disk); copy when they are on different disks."""
    if dst.exists():
        if dst.stat().st_ino == src.stat().st_ino or dst.stat().st_size == src.stat().st_size:
            return
        dst.unlink()
    try:
        os.link(src, dst)
    except OSError:
        print(f"{src} is on another disk than {dst}: copying it ({src.stat().st_size / 1e9:.1f} GB)")
        tmp = dst.with_name(dst.name + ".part")
        shutil.copyfile(src, tmp)
        tmp.replace(dst)


def pack_folder(folder: Path, archive: Path, prefix: str) -> None:
    """Store an extracted image folder as a zip (no recompression), so later stages read one file."""
    files = sorted(f for f in folder.iterdir() if f.is_file() and not f.name.startswith("."))
    if not files:
        raise SourceError(f"{folder} holds no files; point download.local.path at the folder with the data")
    tmp = archive.with_name(archive.name + ".part")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as z:
        for f in tqdm(files, desc=f"pack {archive.name}", unit="file"):
            z.write(f, f"{prefix}/{f.name}")
    tmp.replace(archive)


def import_kaggle_folder(p: DownloadParams, out: Path) -> None:
    """A folder with Kaggle's files: zips are hard-linked, extracted folders packed, CSVs copied."""
    src = Path(p.local.path)
    if not src.is_dir():
        raise SourceError(f"download.local.path {src} is not a folder; point it at the folder with Kaggle's files")
    for archive in competition.archive_names(p.hq).values():
        folder = src / archive[: -len(".zip")]
        if (src / archive).is_file():
            link_or_copy(src / archive, out / archive)
        elif folder.is_dir():
            if not (out / archive).is_file():
                pack_folder(folder, out / archive, folder.name)
        else:
            raise SourceError(f"{src} has neither {archive} nor {folder.name}/; it is not the Carvana data folder")
    for name in competition.CSV_FILES:
        if (src / name).is_file():
            shutil.copyfile(src / name, out / name)
        elif (src / f"{name}.zip").is_file():
            try:
                extract_member(src / f"{name}.zip", name, out / name)
            except ArchiveError as err:
                raise SourceError(str(err)) from None
        elif name != competition.METADATA_CSV:
            raise SourceError(f"{src} has neither {name} nor {name}.zip")
