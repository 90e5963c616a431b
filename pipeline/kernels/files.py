"""A kernel bundle's files, by name: its two folders, its hash, its size; what the package stage writes and the
submit stage pushes (which needs nothing of the prediction code: this module imports none of it)."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

DATASET, KERNEL = "dataset", "kernel"  # the two folders of a bundle
SCRIPT = "kernel.py"
RECIPE = "bundle.json"  # in the dataset: every value predict and encode used, and the models
OWNER = "your-kaggle-username"  # in the metadata's ids until package.owner says (the submit stage fills it in)


def sha256(out: Path) -> str:
    """The bundle's hash, which submit.sha256 names: every file of the dataset and the kernel's script, by path and
    bytes (not the metadata, whose ids carry the owner's name)."""
    h = hashlib.sha256()
    files = [p for p in sorted((out / DATASET).rglob("*")) if p.is_file() and p.name != "dataset-metadata.json"]
    for path in [*files, out / KERNEL / SCRIPT]:
        h.update(str(path.relative_to(out)).encode() + b"\0")
        with open(path, "rb") as f:
            for block in iter(lambda f=f: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def size(out: Path) -> int:
    return sum(p.stat().st_size for p in (out / DATASET).rglob("*") if p.is_file())


def link(src: str, dst: str) -> None:
    """A hard link (no second copy of the weights), or a copy across disks."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def fix_for(log: str) -> str:
    """The likely fix of a kernel's failure, from its log."""
    if "No matching distribution" in log or "ModuleNotFoundError" in log or "No module named" in log:
        return (
            "A package the kernel imports is not in the bundle nor in Kaggle's image: remove it from "
            "package.preinstalled, or add it to package.bundle"
        )
    if "out of memory" in log.lower():
        return "The kernel ran out of memory: lower predict.batch_size and predict.workers"
    if "no " in log and "sample_submission" in log:
        return "The competition is not mounted as expected: check download.competition"
    return "Run the kernel's script by hand (KAGGLE_ROOT=<a copy of Kaggle's folders> python kernel.py) to see more"
