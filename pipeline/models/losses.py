"""BCE + soft Dice for binary and multi-label masks, cross-entropy + soft Dice for multi-class masks.

BCE/CE gives well-calibrated per-pixel gradients; soft Dice optimises the overlap the metric scores,
which matters for the thin boundary band where Carvana is won. Computed in float32 even under autocast.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def label_planes(mask: torch.Tensor, classes: int) -> torch.Tensor:
    """(N, H, W) bit masks (bit c: class c + 1, classes that may overlap) -> (N, classes, H, W) float 0/1 targets."""
    bits = torch.arange(classes, device=mask.device).view(1, -1, 1, 1)
    return ((mask.long().unsqueeze(1) >> bits) & 1).float()


class SegmentationLoss(nn.Module):
    """`multilabel`: one sigmoid per class and bit-mask targets (Severstal's defects, which may overlap)."""

    def __init__(
        self, classes: int, bce_weight: float = 1.0, dice_weight: float = 1.0, smooth: float = 1.0, multilabel=False
    ):
        super().__init__()
        self.classes, self.bce_weight, self.dice_weight, self.smooth = classes, bce_weight, dice_weight, smooth
        self.multilabel = multilabel

    def forward(self, logits: torch.Tensor | list[torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
        """logits (N, C, H, W) (or a list, one per deep-supervision head); mask (N, H, W) class indices or bits."""
        if isinstance(logits, (list, tuple)):
            return torch.stack([self.forward(head, mask) for head in logits]).mean()
        logits = logits.float()
        if self.multilabel:
            target = label_planes(mask, self.classes)
            pixel = F.binary_cross_entropy_with_logits(logits, target)
            probs = torch.sigmoid(logits)
        elif self.classes == 1:
            target = mask.float().unsqueeze(1)  # (N, 1, H, W)
            pixel = F.binary_cross_entropy_with_logits(logits, target)
            probs = torch.sigmoid(logits)
        else:
            target_idx = mask.long()
            pixel = F.cross_entropy(logits, target_idx)
            probs = logits.softmax(dim=1)
            target = F.one_hot(target_idx, self.classes).permute(0, 3, 1, 2).float()
        inter = (probs * target).sum(dim=(2, 3))
        total = probs.sum(dim=(2, 3)) + target.sum(dim=(2, 3))
        dice = (2 * inter + self.smooth) / (total + self.smooth)  # (N, C)
        return self.bce_weight * pixel + self.dice_weight * (1.0 - dice.mean())
