"""JPEG decoding to the model size: draft-mode decoding against a full decode and resize.

    python -m bench.decode [--scale 0.125] [--images 32] [--repeat 5]

The reference is what the seed does: `Image.open(...)` at full size, then `resize` to the model size.
Ours is pipeline.data.images.decode_image, which asks libjpeg for a DCT-domain 1/2, 1/4 or 1/8 decode first.
"""

from __future__ import annotations

import argparse
import io

import numpy as np
from PIL import Image

from bench.common import best_of, demo_competition, machine, open_demo
from pipeline.data.preprocess import Preprocess
from pipeline.images import decode_image


def reference(data: bytes, size: tuple[int, int]) -> np.ndarray:
    img = Image.open(io.BytesIO(data)).convert("RGB")
    return np.asarray(img.resize((size[1], size[0]), Image.BILINEAR), dtype=np.float32) / 255.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=float, default=0.125)
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    comp = open_demo(demo_competition())
    blobs = [comp.read_image(n) for n in comp.train_names[: args.images]]
    size = Preprocess.for_data((1280, 1918), args.scale, 3).size
    ours = best_of(lambda: [decode_image(b, "x.jpg", 3, size) for b in blobs], args.repeat) / len(blobs)
    ref = best_of(lambda: [reference(b, size) for b in blobs], args.repeat) / len(blobs)
    diff = np.abs(decode_image(blobs[0], "x.jpg", 3, size)[0] - reference(blobs[0], size)).mean()
    print(f"machine: {machine()}")
    print(
        f"{len(blobs)} demo JPEGs of 1918x1280 -> {size[1]}x{size[0]} (scale {args.scale}); "
        f"mean |difference| {diff:.4f}"
    )
    print(f"full decode + resize : {ref * 1e3:7.2f} ms/image")
    print(f"draft-mode decode    : {ours * 1e3:7.2f} ms/image")
    print(f"speed-up             : {ref / ours:7.2f}x")


if __name__ == "__main__":
    main()
