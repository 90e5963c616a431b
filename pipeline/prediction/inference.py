"""Probabilities from one or several models, with optional horizontal-flip test-time augmentation.

Models return logits; this is where they become probabilities: a sigmoid per channel for binary and multi-label
models (one channel, or one per defect class that may overlap another), a softmax over classes for multi-class
ones. Several models (the fold models) and the flipped pass are averaged in probability space.
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


@torch.inference_mode()
def probabilities(
    models: Sequence[nn.Module], x: torch.Tensor, tta: bool = False, autocast=nullcontext, labels: str | None = None
) -> torch.Tensor:
    """Mean probabilities (N, C, H, W) of `models` on a normalised batch, over flips when `tta`."""
    total = None
    passes = 0
    for model in models:
        views = [False, True] if tta else [False]
        for flip in views:
            with autocast():
                logits = model(x.flip(-1) if flip else x)
            probs = to_probs(logits, labels)
            probs = probs.flip(-1) if flip else probs
            total = probs if total is None else total.add_(probs)  # in place: probs is always a new tensor
            passes += 1
    return total.div_(passes)
