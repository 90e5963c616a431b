"""The predict stage's output folder: a manifest and zip shards of uint8 probability maps.

Reading them needs no torch, so that encode workers start in a moment.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import zipfile
from pathlib import Path

import numpy as np

from pipeline.errors import UserError

MANIFEST = "manifest.json"


class PredictionError(UserError):
    """Prediction cannot go on; finished shards are kept."""


def shard_name(k: int) -> str:
    return f"shard-{k:05d}.zip"


def read_shard(path: Path, start: int = 0, stop: int | None = None):
    """Yield (name, original (H, W), uint8 probabilities (C, h, w)) of one shard's images start:stop, in order."""
    with zipfile.ZipFile(path) as z:
        for entry in json.loads(z.read("index.json"))[start:stop]:
            probs = np.load(io.BytesIO(z.read(entry["img"].rsplit(".", 1)[0] + ".npy")))
            yield entry["img"], tuple(entry["size"]), probs


def check_manifest(out: Path) -> dict:
    path = out / MANIFEST
    if not path.is_file():
        raise PredictionError(f"{out} has no {MANIFEST}; run `dvc repro predict`")
    return json.loads(path.read_text())


def check_complete(out: Path) -> dict:
    """The manifest, once every shard it announces is there."""
    manifest = check_manifest(out)
    missing = [shard_name(k) for k in range(manifest["shards"]) if not (out / shard_name(k)).is_file()]
    if missing:
        raise PredictionError(
            f"{out} lacks {len(missing)} of {manifest['shards']} shards (e.g. {missing[0]}); "
            f"run `dvc repro predict` to finish them"
        )
    return manifest


def publish(work: Path, out: Path) -> None:
    """Make `out` (the DVC out) hold the finished shards of `work` as hard links: no second copy on disk.

    The shards are made in a work folder that DVC never restores nor deletes, which is what lets an
    interrupted `dvc exp run` continue with the first unfinished shard, as `dvc repro` does.
    """
    manifest = check_complete(work)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    for name in [MANIFEST] + [shard_name(k) for k in range(manifest["shards"])]:
        try:
            os.link(work / name, out / name)
        except OSError:  # another disk
            shutil.copyfile(work / name, out / name)
