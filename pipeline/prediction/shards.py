"""The predict stage's output folder, written and read here: a manifest and zip shards of uint8 probabilities.

`manifest.json` and `shard-NNNNN.zip` files of `shard_size` images each, in sample-submission order: per image
its uint8 probabilities (C, h, w) at the model size, compressed, plus `index.json` (names, shapes and original
sizes). Maps of a megabyte or more are bzip2-compressed: on a scale-1.0 model's 1918x1280 maps it is the
smallest lossless choice at the same writing time (bench.shards: 127 kB an image against 167 for deflate level 6,
201 for PNG and 244 for deflate level 1), which is what lets a full run's shards fit a disk. Smaller maps, where
the disk is no concern (a 1/8-scale Carvana test set: 0.8 GB deflated, 0.7 in bzip2), are deflated (level 6),
which reads 5x faster than bzip2 (0.11 against 0.58 ms for a 240x160 map) and so keeps encode fast. The member's
name says which. The members are compressed on threads, beside the model. A shard appears under its
final name only once complete, so an interrupted run redoes at most one shard per process. The manifest carries
a fingerprint of everything that made the numbers; when it changes, the old shards are deleted before any new
one is written, so a changed model never mixes with stale shards. Reading needs no torch, so that encode
workers start in a moment.
"""

from __future__ import annotations

import bz2
import json
import math
import os
import shutil
import zipfile
import zlib
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from pipeline.competitions.archive import write_member
from pipeline.errors import UserError

MANIFEST = "manifest.json"
FORMAT = "uint8, bz2 from 1 MB, else zlib"
BZIP2_FROM = 1_000_000  # bytes of a map from which bzip2 (the disk) wins over deflate (the speed)
LEVEL = 1  # bzip2 block size in 100 kB: 9 is 3 % smaller and 18 % slower to read (bench.shards)
DEFLATE_LEVEL = 6  # 20 % smaller than level 1 on 240x160 maps, as fast to read
PENDING = 4  # members waiting beyond one per thread, at most: a bounded memory whatever the shard size


class PredictionError(UserError):
    """Prediction cannot go on; finished shards are kept."""


def shard_name(k: int) -> str:
    return f"shard-{k:05d}.zip"


def codec(shape) -> str:
    """How a uint8 map of this shape is compressed: 'bz2' from BZIP2_FROM bytes, else 'zlib'."""
    return "bz2" if math.prod(shape) >= BZIP2_FROM else "zlib"


def _member(image_name: str, shape) -> str:
    return f"{image_name.rsplit('.', 1)[0]}.u8.{codec(shape)}"


def compress(probs: np.ndarray) -> bytes:
    raw = np.ascontiguousarray(probs, dtype=np.uint8).tobytes()
    return bz2.compress(raw, LEVEL) if codec(probs.shape) == "bz2" else zlib.compress(raw, DEFLATE_LEVEL)


def decompress(data: bytes, shape) -> np.ndarray:
    raw = bz2.decompress(data) if codec(shape) == "bz2" else zlib.decompress(data)
    return np.frombuffer(raw, np.uint8).reshape(shape)


def prepare(
    out: Path,
    fingerprint: str,
    images: int,
    shard_size: int,
    classes: int,
    class_names: list[str],
    size,
    labels: str | None = None,
    test_set: dict | None = None,
    train_set: str | None = None,
) -> dict:
    """Write the manifest, deleting every shard of another fingerprint first. Returns the manifest. `test_set`
    ({'competition', 'content'}) says which test set test predictions are of, for a pseudo-label round to check;
    `train_set` (the competition's content hash of the images and labels) which training data out-of-fold maps are
    of, for a blend to check."""
    manifest = {
        "fingerprint": fingerprint,
        "images": images,
        "shard_size": shard_size,
        "shards": -(-images // shard_size),
        "classes": classes,
        "class_names": class_names,
        "labels": labels or ("binary" if classes == 1 else "multiclass"),
        "size": list(size),
        "format": FORMAT,
        **({"test_set": test_set} if test_set is not None else {}),
        **({"train_set": train_set} if train_set is not None else {}),
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
    """Collects one shard's members under a temporary name; renames it when complete.

    Compression runs on threads (bzip2 and zlib let go of the GIL), so that it overlaps the next batch's forward pass:
    a quarter of the cores, at least one; members are written in order, and at most PENDING wait in memory."""

    def __init__(self, out: Path, k: int):
        self.path = out / shard_name(k)
        self.part = out / (shard_name(k) + ".part")
        self.zip = zipfile.ZipFile(self.part, "w", compression=zipfile.ZIP_STORED)
        self.index: list[dict] = []
        self._threads = max(1, (os.cpu_count() or 1) // 4)
        self._pool = ThreadPoolExecutor(self._threads)
        self._pending: deque[tuple[str, Future]] = deque()

    def add(self, name: str, probs: np.ndarray, original: list[int]) -> None:
        """probs: uint8 (C, h, w) at the model size; original: the image's (H, W)."""
        self._pending.append((_member(name, probs.shape), self._pool.submit(compress, probs)))
        self.index.append({"img": name, "size": original, "shape": list(probs.shape)})
        while self._pending and (len(self._pending) > PENDING + self._threads or self._pending[0][1].done()):
            self._write_oldest()

    def _write_oldest(self) -> None:
        member, future = self._pending.popleft()
        write_member(self.zip, member, future.result())  # dated 1980: the same maps, the same bytes

    def close(self) -> None:
        while self._pending:
            self._write_oldest()
        self._pool.shutdown()
        write_member(self.zip, "index.json", json.dumps(self.index).encode())
        self.zip.close()
        self.part.replace(self.path)

    def discard(self) -> None:
        self._pool.shutdown(cancel_futures=True)
        self.zip.close()
        self.part.unlink(missing_ok=True)


class ShardSequence:
    """Images added by their place in the manifest's order, each to its shard (place // shard_size), whose writer
    opens at its first image and closes, complete, at its last; `discard` drops an unfinished one."""

    def __init__(self, out: Path, manifest: dict):
        self.out, self.size, self.images = out, manifest["shard_size"], manifest["images"]
        self.writer: ShardWriter | None = None

    def add(self, place: int, name: str, probs: np.ndarray, original: list[int]) -> bool:
        """Add the image at `place`; True when it completed its shard."""
        k = place // self.size
        self.writer = self.writer or ShardWriter(self.out, k)
        self.writer.add(name, probs, original)
        if len(self.writer.index) < min(self.size, self.images - k * self.size):
            return False
        self.writer.close()
        self.writer = None
        return True

    def discard(self) -> None:
        if self.writer is not None:
            self.writer.discard()
            self.writer = None


def read_shard(path: Path, start: int = 0, stop: int | None = None):
    """Yield (name, original (H, W), uint8 probabilities (C, h, w)) of one shard's images start:stop, in order."""
    with zipfile.ZipFile(path) as z:
        for entry in json.loads(z.read("index.json"))[start:stop]:
            probs = decompress(z.read(_member(entry["img"], entry["shape"])), entry["shape"])
            yield entry["img"], tuple(entry["size"]), probs


class Maps:
    """A finished shard folder read by image name, in any order: out-of-fold maps are stored fold by fold, in each
    experiment's own order, and a blend reads several experiments' maps of one image together."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.manifest = check_complete(folder)
        self._zips = [zipfile.ZipFile(folder / shard_name(k)) for k in range(self.manifest["shards"])]
        self._entries = {e["img"]: (z, e) for z in self._zips for e in json.loads(z.read("index.json"))}

    @property
    def names(self) -> list[str]:
        return list(self._entries)

    def read(self, name: str) -> tuple[tuple[int, int], np.ndarray]:
        """(original (H, W), uint8 probabilities (C, h, w)) of one image."""
        z, entry = self._entries[name]
        return tuple(entry["size"]), decompress(z.read(_member(name, entry["shape"])), entry["shape"])

    def close(self) -> None:
        for z in self._zips:
            z.close()


def check_manifest(out: Path) -> dict:
    path = out / MANIFEST
    if not path.is_file():
        raise PredictionError(f"{out} has no {MANIFEST}; run `dvc repro predict`")
    return json.loads(path.read_text())


def missing(out: Path, manifest: dict) -> list[int]:
    """The indices of the shards not yet complete in `out`."""
    return [k for k in range(manifest["shards"]) if not (out / shard_name(k)).is_file()]


def check_complete(out: Path) -> dict:
    """The manifest, once every shard it announces is there."""
    manifest = check_manifest(out)
    left = missing(out, manifest)
    if left:
        raise PredictionError(
            f"{out} lacks {len(left)} of {manifest['shards']} shards (e.g. {shard_name(left[0])}); "
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
