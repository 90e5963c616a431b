"""Dice as Kaggle scores it, the threshold sweep, the multi-class scores, a submission's score."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.evaluation import metrics
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
    board = metrics.Scoreboard(1)
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


def test_a_submission_is_scored_per_image_then_averaged():
    shape = (4, 5)
    truth = {"a.jpg": "1 4", "b.jpg": "", "c.jpg": "3 2"}
    submission = {"a.jpg": "1 2", "b.jpg": "", "c.jpg": "10 2"}
    assert metrics.submission_dice(submission, truth, shape) == pytest.approx((2 * 2 / 6 + 1.0 + 0.0) / 3)
