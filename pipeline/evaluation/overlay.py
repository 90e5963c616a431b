"""Pictures of predictions: the image with correct, missed and extra pixels in colour."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

HIT, MISS, EXTRA = (40, 200, 80), (40, 110, 255), (255, 50, 50)  # true positive, false negative, false positive
PALETTE = np.array(
    [
        [0, 0, 0],
        [200, 30, 30],
        [40, 120, 220],
        [250, 200, 40],
        [250, 250, 250],
        [120, 60, 200],
        [30, 180, 160],
        [240, 120, 200],
    ],
    dtype=np.uint8,
)


def compare(
    image: np.ndarray, pred: np.ndarray, truth: np.ndarray | None, caption: str = "", width: int = 960
) -> Image.Image:
    """Blend hits (green), misses (blue) and extra pixels (red) over an RGB image, then shrink to `width`."""
    out = image.astype(np.float32)
    pred = pred.astype(bool)
    layers = [(pred, HIT)] if truth is None else [(pred & truth, HIT), (~pred & truth, MISS), (pred & ~truth, EXTRA)]
    for where, colour in layers:
        out[where] = 0.55 * out[where] + 0.45 * np.array(colour, dtype=np.float32)
    picture = Image.fromarray(out.clip(0, 255).astype(np.uint8))
    if picture.width > width:
        picture = picture.resize((width, round(picture.height * width / picture.width)), Image.BILINEAR)
    if caption:
        ImageDraw.Draw(picture).text((8, 8), caption, fill=(0, 0, 0))
    return picture


def colorize(index_mask: np.ndarray) -> Image.Image:
    """An RGB picture of a class-index mask (class 0 black)."""
    return Image.fromarray(PALETTE[index_mask % len(PALETTE)])
