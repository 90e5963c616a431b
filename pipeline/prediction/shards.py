"""The predict stage's output folder, written and read here: a manifest and zip shards of uint8 probabilities.

`manifest.json` and `shard-NNNNN.zip` files of `shard_size` images each, in sample-submission order: per image
a `.npy` of uint8 probabilities (C, h, w) at the model size, plus `index.json` (names and original sizes). A
shard appears under its final name only once complete, so an interrupted run redoes at most one shard per
process. The manifest carries a fingerprint of everything that made the numbers; when it changes, the old
shards are deleted before any new one is written, so a changed model never mixes with stale shards.
Reading needs no torch, so that encode workers start in a moment.
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


def _member(image_name: str) -> str:
    return image_name.rsplit(".", 1)[0] + ".npy"


def prepare(
    out: Path,
    fingerprint: str,
    images: int,
    shard_size: int,
    classes: int,
    class_names: list[str],
    size,
    labels: str | None = None,
) -> dict:
    """Write the manifest, deleting every shard of another fingerprint first. Returns the manifest."""
    manifest = {
        "fingerprint": fingerprint,
        "images": images,
        "shard_size": shard_size,
        "shards": -(-images // shard_size),
        "classes": classes,
        "class_names": class_names,
        "labels": labels or ("binary" if classes == 1 else "multiclass"),
        "size": list(size),
    }
    out.mkdir(parents=True, exist_ok=True)
    path = out / MANIFEST
    old = json.loads(path.read_text()) if path.is_file() else None
    if old != manifest:
        for stale in list(out.glob("shard-*.zip")) + list(out.glob("shard-*.part")):
            stale.unlink()
        if old is not None:
            print(f"{out}: models or settings changed; the old shards were deleted")
        path.write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


class ShardWriter:
    """Collects one shard's members under a temporary name; renames it when complete."""

    def __init__(self, out: Path, k: int):
        self.path = out / shard_name(k)
        self.part = out / (shard_name(k) + ".part")
        self.zip = zipfile.ZipFile(self.part, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1)
        self.index: list[dict] = []

    def add(self, name: str, probs: np.ndarray, original: list[int]) -> None:
        """probs: uint8 (C, h, w) at the model size; original: the image's (H, W)."""
        buf = io.BytesIO()
        np.save(buf, probs)
        self.zip.writestr(_member(name), buf.getvalue())
        self.index.append({"img": name, "size": original})

    def close(self) -> None:
        self.zip.writestr("index.json", json.dumps(self.index))
        self.zip.close()
        self.part.replace(self.path)

    def discard(self) -> None:
        self.zip.close()
        self.part.unlink(missing_ok=True)


def read_shard(path: Path, start: int = 0, stop: int | None = None):
    """Yield (name, original (H, W), uint8 probabilities (C, h, w)) of one shard's images start:stop, in order."""
    with zipfile.ZipFile(path) as z:
        for entry in json.loads(z.read("index.json"))[start:stop]:
            probs = np.load(io.BytesIO(z.read(_member(entry["img"]))))
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
