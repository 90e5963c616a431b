"""Dice as the competitions score it (per image; per image and class), the threshold sweep, the minimum object
area, the multi-class scores."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.masks import postprocess
from pipeline.masks import scoring as metrics
from pipeline.masks.postprocess import Rule


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


def _pairs(seed: int = 0, images: int = 6):
    """Severstal-like validation images: bit masks of 3 classes with large true objects, and probabilities that
    find them plus small false specks (what the minimum area removes)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(images):
        full = np.zeros((32, 80), np.uint8)
        probs = torch.zeros(3, 16, 40)
        for c in range(3):
            if rng.random() < 0.5:
                top, left = rng.integers(0, 20), rng.integers(0, 60)
                full[top : top + 10, left : left + 16] |= np.uint8(1 << c)
                probs[c, top // 2 : top // 2 + 5, left // 2 : left // 2 + 8] = 0.9
            speck = rng.integers(0, 16), rng.integers(0, 40)
            probs[c, speck[0], speck[1]] = 0.8  # a false positive of a few pixels at full size
        out.append((f"{i}.jpg", probs, full))
    return out


def test_pair_dice_with_an_area_rule_is_the_dice_of_the_masks_made_by_that_rule():
    board = metrics.PairScoreboard(3, areas=True)
    for name, probs, full in _pairs():
        board.add(name, probs, full)
    rules = [Rule(0.5, board.min_areas[2])] * 3
    expected = []
    for _, probs, full in _pairs():
        q = postprocess.to_uint8(probs)
        expected.append([metrics.dice(rules[c].apply(q[c], full.shape), (full >> c) & 1) for c in range(3)])
    assert np.allclose(board._pair_dice(rules), np.array(expected))


def test_the_chosen_rules_never_score_below_the_best_thresholds_alone():
    board = metrics.PairScoreboard(3, areas=True)
    for name, probs, full in _pairs(1, 10):
        board.add(name, probs, full)
    rules, chosen, sweep = board.choose(0.2, 0.8)
    assert chosen["dice"] >= chosen["dice_without_area_rule"] - 1e-12
    assert chosen["dice"] > chosen["dice_without_area_rule"]  # the specks cost Dice on empty pairs
    assert any(r.min_area > 0 for r in rules) and len(sweep) == postprocess.cut(0.8) - postprocess.cut(0.2) + 1
    report = board.class_report(rules, ["a", "b", "c"])
    assert set(report) == {"a", "b", "c"} and all(v["dice"] >= v["dice_without_area"] - 1e-12 for v in report.values())
    assert board.per_rule(rules).mean() == pytest.approx(chosen["dice"])


def test_all_empty_is_the_share_of_pairs_without_a_defect():
    board = metrics.PairScoreboard(2)
    full = np.zeros((8, 8), np.uint8)
    full[2:4, 2:4] = 1  # class 1 only
    board.add("a.jpg", torch.zeros(2, 8, 8), full)
    board.add("b.jpg", torch.zeros(2, 8, 8), np.zeros((8, 8), np.uint8))
    assert board.all_empty() == 0.75 and board.dice(0.5) == 0.75  # empty predictions score the empty pairs


def _faint_and_strong(count: int, seed: int = 0):
    """Images whose class is either absent, with a faint area of mid probabilities (the model unsure), or present,
    with a confident core in a halo of the same mid probabilities that belongs to it: no threshold tells the two apart
    (low: the faint areas become masks; high: the halos go), the empty-mask rule does (SIIM, Severstal)."""
    rng = np.random.default_rng(seed)
    for i in range(count):
        full = np.zeros((32, 48), np.uint8)
        probs = torch.full((1, 16, 24), 0.02)
        if i % 2:
            full[4:28, 8:40] = 1
            probs[0, 2:14, 4:20] = 0.45  # the halo, as unsure as the faint areas
            probs[0, 5:11, 8:16] = 0.97  # the core
        else:
            top = int(rng.integers(0, 8))
            probs[0, top : top + 8, 2:22] = 0.45
        yield f"{i}.jpg", probs, full


@pytest.mark.parametrize("pairs", [False, True])
def test_the_empty_mask_rule_drops_unsure_masks_and_scores_what_it_submits(pairs):
    board = metrics.PairScoreboard(1, areas=True) if pairs else metrics.Scoreboard(1)
    for name, probs, full in _faint_and_strong(20):
        board.add(name, probs, full)
    plain_rules, plain, _ = board.choose(0.2, 0.8)
    rules, chosen, _ = board.choose(0.2, 0.8, empty_rule=True)
    (rule,) = rules
    assert rule.top_pixels > 0 and rule.top > 0.45 and rule.threshold < 0.45  # decided high, drawn low
    assert chosen["dice"] > plain["dice"] + 0.1 and chosen["dice"] > 0.95
    assert board.per_rule(rules).mean() == pytest.approx(chosen["dice"])
    expected = [metrics.dice(rule.apply(postprocess.to_uint8(p)[0], f.shape), f) for _, p, f in _faint_and_strong(20)]
    assert board.per_rule(rules) == pytest.approx(expected)  # the scored masks are the ones encode writes
    assert not board.choose(0.2, 0.8)[0][0].top_pixels  # off unless asked


def test_the_empty_mask_rule_is_kept_only_where_it_helps():
    board = metrics.PairScoreboard(3, areas=True)
    for name, probs, full in _pairs(1, 10):
        board.add(name, probs, full)
    without, plain, _ = board.choose(0.2, 0.8)
    with_rule, chosen, _ = board.choose(0.2, 0.8, empty_rule=True)
    assert chosen["dice"] >= plain["dice"] - 1e-12
    assert all(w == r or r.top_pixels for w, r in zip(without, with_rule, strict=True))
