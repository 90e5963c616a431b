"""Encode alone: up-sampling to 1918x1280, threshold, RLE and gzip, in masks per second per core.

    python -m bench.encode [--images 1024] [--model models/fold0/best.pt]

Predicts the demo test images once into shards, then times the encode stage's per-piece work on one
core (`encode.encode_piece`: read, up-sample and threshold, RLE, validate, gzip; the goal is 1,000 masks/s) and the
whole `encode.write` on every core, which adds the worker pool's start, the ordered write and the self-check (one
image in 8, at most 200, made again the plain way and its rows decoded): a cost that 1,024 images make look large
and 100,064 do not.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from bench.common import demo_competition, encode_carvana, load_model, machine, open_demo, predict_on_cpu
from pipeline import paths
from pipeline.competitions.carvana import Carvana
from pipeline.masks import postprocess, rle
from pipeline.masks.postprocess import Rule
from pipeline.prediction import shards
from pipeline.submission import encode


def plain_path(shard: Path) -> float:
    """Masks/s of the reference: each map up-sampled whole to 1918x1280 (float32), cut, run-length encoded."""
    maps = list(shards.read_shard(shard))
    start = time.perf_counter()
    for _, size, probs in maps:
        rle.encode(postprocess.full_mask(postprocess.car_probability(probs), size, 0.5))
    return len(maps) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=1024)
    parser.add_argument("--model", type=Path, default=paths.model(0))
    args = parser.parse_args()
    comp = open_demo(demo_competition(args.images))
    names = comp.test.names()[: args.images]
    model, pre = load_model(args.model)
    work = Path(tempfile.mkdtemp(prefix="carvana-bench-encode-"))
    predict_on_cpu(model, pre, comp.test, names, work, shard_size=100)
    files = sorted(work.glob("shard-*.zip"))
    start = time.perf_counter()
    for k, shard in enumerate(files):
        piece = Carvana.format_for(names[k * 100 : (k + 1) * 100])
        encode.encode_piece(shard, 0, None, k * 100, Carvana, piece, [Rule(0.5)], every=len(names) + 1)
    one_core = len(names) / (time.perf_counter() - start)
    plain = plain_path(files[0])
    start = time.perf_counter()
    encode_carvana(work, names, work / "submission.csv.gz")
    every_core = len(names) / (time.perf_counter() - start)
    cores = os.cpu_count()
    print(f"machine: {machine()}, {cores} cores")
    print(f"{len(names)} masks of 1918x1280 from {pre.size[1]}x{pre.size[0]} uint8 probabilities")
    print(f"one core  : {one_core:7.1f} masks/s (up-sample, threshold, RLE, validate, gzip)")
    print(f"one core  : {one_core / 1000:7.2f}x the goal of 1,000 masks/s")
    print(f"plain path: {plain:7.1f} masks/s on one core (whole-map up-sampling, cut, RLE): {one_core / plain:.1f}x")
    print(f"{cores} cores   : {every_core:7.1f} masks/s (the whole stage: pool, ordered write, self-check)")


if __name__ == "__main__":
    main()
