"""Dice as Kaggle scores it, the threshold sweep, the multi-class scores, and the losses."""

from __future__ import annotations

import numpy as np
import torch

from pipeline.evaluation import metrics
from pipeline.evaluation.evaluate import Scoreboard
from pipeline.models.losses import SegmentationLoss
from pipeline.submission import postprocess


def test_curve_matches_direct_dice_at_every_cut():
    rng = np.random.default_rng(1)
    prob = (rng.random((40, 50)) * 255).astype(np.uint8)
    truth = rng.random((40, 50)) > 0.7
    curve = metrics.dice_curve(metrics.dice_counts(prob, truth))
    for k in range(0, 256, 17):
        assert abs(curve[k] - metrics.dice(prob > k, truth)) < 1e-12


def test_both_empty_is_one_and_one_empty_is_zero():
    empty = np.zeros((8, 8), np.uint8)
    assert metrics.dice_curve(metrics.dice_counts(empty, empty))[128] == 1.0
    assert metrics.dice_curve(metrics.dice_counts(empty + 255, empty))[128] == 0.0


def test_scoreboard_upsamples_before_thresholding():
    board = Scoreboard(1)
    truth = np.zeros((64, 96), np.uint8)
    truth[16:48, 24:72] = 1
    probs = torch.zeros(1, 16, 24)
    probs[0, 4:12, 6:18] = 1.0
    board.add("a.jpg", probs, truth)
    assert board.dice(0.5) > 0.95  # judged at 64x96, not 16x24
    threshold, best, table = board.sweep(0.2, 0.8)
    assert (
        0.2 <= threshold <= 0.8
        and best >= board.dice(0.5)
        and len(table) == postprocess.cut(0.8) - postprocess.cut(0.2) + 1
    )


def test_multiclass_scores_per_class():
    truth = np.array([[0, 1], [2, 2]], np.uint8)
    pred = np.array([[0, 1], [2, 1]], np.uint8)
    scores = metrics.class_scores(metrics.confusion(pred, truth, 3))
    assert np.allclose(scores["dice"], [1.0, 2 / 3, 2 / 3]) and np.allclose(scores["iou"], [1.0, 0.5, 0.5])


def test_losses_are_low_for_the_truth_and_high_for_its_opposite():
    mask = torch.zeros(2, 8, 8, dtype=torch.uint8)
    mask[:, 2:6, 2:6] = 1
    binary = SegmentationLoss(1)
    good = (mask.float() * 20 - 10).unsqueeze(1)
    assert binary(good, mask) < 0.05 < 1.0 < binary(-good, mask)
    multi = SegmentationLoss(3)
    logits = torch.nn.functional.one_hot(mask.long(), 3).permute(0, 3, 1, 2).float() * 20
    assert multi(logits, mask) < 0.05 and multi([logits, logits], mask) < 0.05
