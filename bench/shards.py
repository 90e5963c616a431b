"""The predict stage's shard format on real maps: bytes per image and the time to write and read each, for the
shards' codec (bzip2 for maps of a megabyte or more, else deflate 6) against the former deflated `.npy` (level 1),
other deflate levels, bzip2 levels and grey PNGs (the C channels stacked), in one run.

    python -m bench.shards [data/predictions] [--images 24]

Run it on the shards of a full-resolution run (say `dvc exp run -S train.scale=1.0 -S train.crop=256` on the
demo) to see what 100,064 test images will take on disk; every variant is checked to read back bit for bit.
"""

from __future__ import annotations

import argparse
import bz2
import io
import time
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline import paths
from pipeline.prediction import shards

CARVANA_TEST = 100_064


def npy_deflate(probs: np.ndarray, level: int = 1) -> bytes:
    buf = io.BytesIO()
    np.save(buf, probs)
    return zlib.compress(buf.getvalue(), level)


def npy_inflate(data: bytes, shape) -> np.ndarray:
    return np.load(io.BytesIO(zlib.decompress(data)))


def png(probs: np.ndarray, level: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(probs.reshape(-1, probs.shape[-1]))).save(buf, "PNG", compress_level=level)
    return buf.getvalue()


def unpng(data: bytes, shape) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data))).reshape(shape)


def unbzip2(data: bytes, shape) -> np.ndarray:
    return np.frombuffer(bz2.decompress(data), np.uint8).reshape(shape)


def variants() -> dict:
    return {
        "npy + deflate 1 (former)": (npy_deflate, npy_inflate),
        "npy + deflate 6": (lambda p: npy_deflate(p, 6), npy_inflate),
        "PNG level 3": (lambda p: png(p, 3), unpng),
        "PNG level 6": (lambda p: png(p, 6), unpng),
        "bzip2 1": (lambda p: bz2.compress(p.tobytes(), 1), unbzip2),
        "bzip2 9": (lambda p: bz2.compress(p.tobytes(), 9), unbzip2),
        "the shards' codec": (shards.compress, shards.decompress),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("predictions", type=Path, nargs="?", default=paths.PREDICTIONS)
    parser.add_argument("--images", type=int, default=24)
    args = parser.parse_args()
    manifest = shards.check_complete(args.predictions)
    maps = []
    for k in range(manifest["shards"]):
        maps += [p for _, _, p in shards.read_shard(args.predictions / shards.shard_name(k))][: args.images - len(maps)]
    c, h, w = maps[0].shape
    print(f"{len(maps)} maps of {c}x{h}x{w} uint8 ({c * h * w / 1e3:.0f} kB raw) from {args.predictions}")
    print(f"the shards' codec for maps of this size: {shards.codec(maps[0].shape)}")
    print(f"{'format':28} {'kB/image':>9} {'max kB':>7} {'write ms':>9} {'read ms':>8} {'GB/100,064':>10}  vs former")
    reference = None
    for name, (write, read) in variants().items():
        started = time.perf_counter()
        blobs = [write(m) for m in maps]
        wrote = (time.perf_counter() - started) / len(maps)
        started = time.perf_counter()
        back = [read(b, m.shape) for b, m in zip(blobs, maps, strict=True)]
        took = (time.perf_counter() - started) / len(maps)
        assert all(np.array_equal(a, b) for a, b in zip(maps, back, strict=True)), name
        size = np.mean([len(b) for b in blobs])
        reference = reference or size
        print(
            f"{name:28} {size / 1e3:9.1f} {max(len(b) for b in blobs) / 1e3:7.1f} {wrote * 1e3:9.1f} "
            f"{took * 1e3:8.1f} {CARVANA_TEST * size / 1e9:10.1f}  {size / reference:.2f}x size"
        )


if __name__ == "__main__":
    main()
