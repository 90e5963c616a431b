"""Probabilities from one or several models, with optional horizontal-flip test-time augmentation.

Models return logits; this is where they become probabilities: a sigmoid for one output channel, a
softmax over classes otherwise. Several models (the fold models) and the flipped pass are averaged in
probability space.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Sequence

import torch
from torch import nn


def to_probs(logits: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) logits -> probabilities (sigmoid for C == 1, softmax otherwise), float32."""
    logits = logits.float()
    return torch.sigmoid(logits) if logits.shape[1] == 1 else logits.softmax(dim=1)


@torch.inference_mode()
def probabilities(
    models: Sequence[nn.Module], x: torch.Tensor, tta: bool = False, autocast=nullcontext
) -> torch.Tensor:
    """Mean probabilities (N, C, H, W) of `models` on a normalised batch, over flips when `tta`."""
    total = None
    passes = 0
    for model in models:
        views = [False, True] if tta else [False]
        for flip in views:
            with autocast():
                logits = model(x.flip(-1) if flip else x)
            probs = to_probs(logits)
            probs = probs.flip(-1) if flip else probs
            total = probs if total is None else total.add_(probs)  # in place: probs is always a new tensor
            passes += 1
    return total.div_(passes)
