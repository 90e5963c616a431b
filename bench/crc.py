"""The download's integrity check of a Kaggle-sized test.zip: tasks that each open the zip once, against a
task per 200 members (each parsing the 100k-entry directory again).

    python -m bench.crc [--members 100064] [--size 2048]

The zip is synthetic (stored members of random bytes named like Carvana's test images), written to a temporary
folder; both variants check the same file in the same run.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

from pipeline.competitions.archive import check_crcs, crc_chunk


def synthetic_zip(path: Path, members: int, size: int) -> None:
    rng = np.random.default_rng(0)
    blob = rng.integers(0, 256, size * 64, dtype=np.uint8).tobytes()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for i in range(members):
            start = (i * 7919) % (len(blob) - size)
            z.writestr(f"test/{i:012x}_{i % 16 + 1:02d}.jpg", blob[start : start + size])


def timed(path: Path, chunk: int) -> float:
    started = time.perf_counter()
    check_crcs(path, jobs=-1, chunk=chunk)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--members", type=int, default=100_064)
    parser.add_argument("--size", type=int, default=2048, help="bytes per member")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="carvana-bench-crc-") as tmp:
        path = Path(tmp) / "test.zip"
        synthetic_zip(path, args.members, args.size)
        ours = crc_chunk(args.members, -1)
        new = timed(path, ours)
        old = timed(path, 200)
    print(f"{args.members:,} members of {args.size} bytes in one stored zip, {os.cpu_count()} cores")
    print(f"a task per 200 members ({-(-args.members // 200)} opens): {old:7.1f} s")
    print(f"a task per {ours} members ({-(-args.members // ours)} opens): {new:7.1f} s")
    print(f"speed-up: {old / new:.1f}x")


if __name__ == "__main__":
    main()
