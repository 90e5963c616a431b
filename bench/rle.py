"""RLE encode speed on 1918x1280 car masks: ours against the standard Kaggle snippet.

    python -m bench.rle [--masks 32] [--repeat 20]

The reference is the snippet most public Carvana kernels used (`np.concatenate([[0], m.flatten(),
[0]])`, then `np.where` on the shifted copies). Both run on the same demo masks in the same process;
the outputs are checked to be identical before anything is timed.
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np

from pipeline.competitions.carvana import demo, demo_cars, demo_render
from pipeline.masks import rle


def standard_snippet(mask: np.ndarray) -> str:
    pixels = np.concatenate([[0], mask.flatten(), [0]])
    runs = np.where(pixels[1:] != pixels[:-1])[0] + 1
    runs[1::2] -= runs[::2]
    return " ".join(str(x) for x in runs)


def car_masks(n: int) -> list[np.ndarray]:
    """Full-size demo masks: n views over several cars, uint8 0/1 like Kaggle's GIFs."""
    masks = []
    for i in range(n):
        car = demo_cars.make_car(np.random.default_rng([0, 0, i // demo.VIEWS]))
        _, index = demo_render.render(car, 1 + i % demo.VIEWS, 1918, 1280, np.random.default_rng(i))
        masks.append((index > 0).astype(np.uint8))
    return masks


def best_time(fn, masks, repeat: int) -> float:
    """Best of `repeat` passes over all masks, in seconds per mask."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for m in masks:
            fn(m)
        best = min(best, time.perf_counter() - start)
    return best / len(masks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--masks", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    masks = car_masks(args.masks)
    for m in masks:
        assert rle.encode(m) == standard_snippet(m), "outputs differ"
    ours = best_time(rle.encode, masks, args.repeat)
    ref = best_time(standard_snippet, masks, args.repeat)
    print(f"machine: {platform.processor() or platform.machine()}, numpy {np.__version__}")
    print(f"{len(masks)} masks of 1918x1280, identical output; best of {args.repeat} passes")
    print(f"standard snippet : {ref * 1e3:7.3f} ms/mask")
    print(f"pipeline.rle     : {ours * 1e3:7.3f} ms/mask")
    print(f"speed-up         : {ref / ours:7.2f}x")


if __name__ == "__main__":
    main()
