"""Segmentation losses: BCE (or CE) plus soft Dice, with deep supervision."""

from __future__ import annotations

import torch

from pipeline.models.losses import SegmentationLoss


def test_losses_are_low_for_the_truth_and_high_for_its_opposite():
    mask = torch.zeros(2, 8, 8, dtype=torch.uint8)
    mask[:, 2:6, 2:6] = 1
    binary = SegmentationLoss(1)
    good = (mask.float() * 20 - 10).unsqueeze(1)
    assert binary(good, mask) < 0.05 < 1.0 < binary(-good, mask)
    multi = SegmentationLoss(3)
    logits = torch.nn.functional.one_hot(mask.long(), 3).permute(0, 3, 1, 2).float() * 20
    assert multi(logits, mask) < 0.05 and multi([logits, logits], mask) < 0.05
