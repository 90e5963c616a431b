"""From model output to a full-size mask, the one way evaluate and encode both use.

Probabilities are stored as uint8 (p * 255, rounded) at the model size, up-sampled bilinearly to the
original size, then thresholded: a pixel is the car when its value exceeds `cut(threshold)`. Because
evaluate sweeps thresholds on exactly these values, the Dice it reports is the Dice the submission gets.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from pipeline.images import Size


def to_uint8(probs: torch.Tensor) -> np.ndarray:
    """Probabilities in [0, 1] (any shape) -> uint8 0..255."""
    return (probs.float().clamp(0, 1) * 255.0).round().to(torch.uint8).cpu().numpy()


def upsample(prob: np.ndarray, size: Size) -> np.ndarray:
    """Bilinear resize of a uint8 (h, w) probability map to (height, width)."""
    if prob.shape == size:
        return prob
    return np.array(Image.fromarray(prob).resize((size[1], size[0]), Image.BILINEAR))


def cut(threshold: float) -> int:
    """The uint8 level a probability must exceed to count as the car."""
    return int(round(threshold * 255))


def binary_mask(prob: np.ndarray, size: Size, threshold: float) -> np.ndarray:
    """Full-size boolean mask from a uint8 probability map at the model size."""
    return upsample(prob, size) > cut(threshold)
