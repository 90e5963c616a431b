"""Probabilities from one or several models, with optional test-time augmentation (TTA).

Models return logits; this is where they become probabilities: a sigmoid per channel for binary and multi-label
models (one channel, or one per defect class that may overlap another), a softmax over classes for multi-class
ones. Several models (the fold models) and the views of a TTA set (flips, transposes: the image's symmetries,
undone on the output) are averaged in probability space. For Carvana a vertical flip turns a car upside down, a
view the training never showed: expect `vflip`, `hvflip` and `d4` to help less than `hflip` there, and more on
images with no up and down (microscopy, satellites, steel seen from above).
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Sequence

import torch
from torch import nn


def to_probs(logits: torch.Tensor, labels: str | None = None) -> torch.Tensor:
    """(N, C, H, W) logits -> float32 probabilities: softmax over C for `multiclass`, else a sigmoid each; without
    `labels`, a model of several channels is taken for multi-class."""
    logits = logits.float()
    labels = labels or ("multiclass" if logits.shape[1] > 1 else "binary")
    return logits.softmax(dim=1) if labels == "multiclass" else torch.sigmoid(logits)


View = tuple[bool, bool, bool]  # (flip up-down, flip left-right, swap height and width), applied in that order
_D4: list[View] = [(v, h, t) for t in (False, True) for v in (False, True) for h in (False, True)]
TTA_SETS: dict[str, list[View]] = {
    "none": [(False, False, False)],
    "hflip": [(False, False, False), (False, True, False)],
    "vflip": [(False, False, False), (True, False, False)],
    "hvflip": _D4[:4],
    "d4": _D4,  # the 8 symmetries of the square: every flip, with and without a transpose
}


def _view(x: torch.Tensor, view: View) -> torch.Tensor:
    v, h, t = view
    x = x.flip(-2) if v else x
    x = x.flip(-1) if h else x
    return x.transpose(-2, -1) if t else x


def _unview(x: torch.Tensor, view: View) -> torch.Tensor:
    v, h, t = view
    x = x.transpose(-2, -1) if t else x
    x = x.flip(-1) if h else x
    return x.flip(-2) if v else x


@torch.inference_mode()
def probabilities(
    models: Sequence[nn.Module],
    x: torch.Tensor,
    tta: str = "none",
    autocast=nullcontext,
    labels: str | None = None,
) -> torch.Tensor:
    """Mean probabilities (N, C, H, W) of `models` on a normalised batch, over the views of the TTA set `tta`."""
    total = None
    passes = 0
    for model in models:
        for view in TTA_SETS[tta]:
            with autocast():
                logits = model(_view(x, view) if any(view) else x)
            probs = to_probs(logits, labels)
            probs = _unview(probs, view) if any(view) else probs
            total = probs if total is None else total.add_(probs)  # in place: probs is always a new tensor
            passes += 1
    return total.div_(passes)
