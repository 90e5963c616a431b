"""The competitions' metrics at full resolution, their accumulators, and the post-processing they choose.

Dice is 1 when both masks are empty. Carvana averages it over images (`Scoreboard`), Severstal over every
(image, class) pair (`PairScoreboard`). For a uint8 probability map, the two histograms (all pixels, truth
pixels) give the exact Dice at every one of the 256 possible thresholds in one pass, which is how the threshold
sweep costs no more than one evaluation; a minimum object area needs the objects themselves, so it is swept on
a coarser grid of thresholds.
"""

from __future__ import annotations

import numpy as np
import torch

from pipeline.masks import postprocess
from pipeline.masks.postprocess import Rule


def dice_counts(prob: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """(2, 256) int64: histogram of the uint8 probabilities over all pixels, and over truth pixels."""
    q = torch.from_numpy(np.ascontiguousarray(prob).reshape(-1)).to(torch.int16)
    t = torch.from_numpy(np.ascontiguousarray(truth, dtype=np.uint8).reshape(-1)).to(torch.int16)
    both = torch.bincount(q + (t << 8), minlength=512).numpy().astype(np.int64)  # one pass: bins 256.. are truth
    return np.stack([both[:256] + both[256:], both[256:]])


def dice_curve(counts: np.ndarray) -> np.ndarray:
    """Dice for every cut k = 0..255 (prediction = probability > k), from `dice_counts`."""
    above = np.cumsum(counts[:, ::-1], axis=1)[:, ::-1]  # above[:, k] = count of values >= k
    pred = np.append(above[0, 1:], 0)  # values > k
    inter = np.append(above[1, 1:], 0)
    truth = counts[1].sum()
    denom = pred + truth
    return np.where(denom == 0, 1.0, 2.0 * inter / np.maximum(denom, 1))


TOPS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))  # the empty-mask rule's thresholds: 0.5 .. 0.95


def above_tops(counts: np.ndarray) -> np.ndarray:
    """(len(TOPS),) pixels above each of TOPS, from `dice_counts`: what the empty-mask rule decides on."""
    above = np.cumsum(counts[0][::-1])[::-1]  # above[k] = pixels >= k
    return np.array([above[postprocess.cut(t) + 1] if postprocess.cut(t) < 255 else 0 for t in TOPS])


def best_empty_rule(
    curves: np.ndarray, above: np.ndarray, empty: np.ndarray, cuts: np.ndarray, minimums: list[int]
) -> tuple[float, Rule | None]:
    """The empty-mask rule (SIIM-ACR 1st place's triplet: a top threshold, a minimum of pixels above it, a bottom
    threshold that draws the mask) of the best mean Dice on these images: `curves` (n, 256) each image's Dice at every
    cut, `above` (n, len(TOPS)) its pixels above each top, `empty` (n,) whether its truth is empty (an image whose
    mask is dropped scores 1 then, else 0). (that Dice, the rule), or (-1, None) without a minimum to try."""
    best, rule = -1.0, None
    n = len(curves)
    for t, top in enumerate(TOPS):
        for minimum in (m for m in minimums if m > 0):
            keep = above[:, t] >= minimum
            scores = (curves[keep][:, cuts].sum(axis=0) + empty[~keep].sum()) / n
            k = int(np.argmax(scores))
            if scores[k] > best:
                best, rule = float(scores[k]), Rule(int(cuts[k]) / 255.0, 0, top, int(minimum))
    return best, rule


def rule_scores(rule: Rule, curves: np.ndarray, above: np.ndarray, empty: np.ndarray) -> np.ndarray:
    """Each image's Dice under a threshold, or a threshold and the empty-mask rule (no minimum area)."""
    plain = curves[:, postprocess.cut(rule.threshold)]
    if not rule.top_pixels:
        return plain
    keep = above[:, TOPS.index(rule.top)] >= rule.top_pixels
    return np.where(keep, plain, empty.astype(np.float64))


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """Dice of two boolean masks, 1 when both are empty."""
    p, t = pred.astype(bool), truth.astype(bool)
    total = int(p.sum()) + int(t.sum())
    return 1.0 if total == 0 else 2.0 * int((p & t).sum()) / total


def confusion(pred: np.ndarray, truth: np.ndarray, classes: int) -> np.ndarray:
    """(classes, classes) int64 counts, rows = truth, columns = prediction."""
    idx = torch.from_numpy(truth.astype(np.int64).reshape(-1) * classes + pred.astype(np.int64).reshape(-1))
    return torch.bincount(idx, minlength=classes * classes).reshape(classes, classes).numpy()


def class_scores(matrix: np.ndarray) -> dict[str, np.ndarray]:
    """Per-class Dice and IoU from an accumulated confusion matrix (1 for a class absent on both sides)."""
    inter = np.diag(matrix).astype(np.float64)
    truth, pred = matrix.sum(axis=1), matrix.sum(axis=0)
    union = truth + pred - inter
    dice_c = np.where(truth + pred == 0, 1.0, 2 * inter / np.maximum(truth + pred, 1))
    iou_c = np.where(union == 0, 1.0, inter / np.maximum(union, 1))
    return {"dice": dice_c, "iou": iou_c}


class Scoreboard:
    """Per-image full-resolution scores of one evaluation.

    Every model is scored as Carvana scores it, on the car (for a multi-class model: not background),
    with the Dice at all 256 cuts per image; multi-class models also keep a confusion matrix per image.
    """

    def __init__(self, classes: int):
        self.classes = classes  # model output channels: 1 = binary
        self.names: list[str] = []
        self.curves: list[np.ndarray] = []  # (256,) car Dice per cut
        self.above: list[np.ndarray] = []  # (len(TOPS),) pixels above each top threshold (the empty-mask rule)
        self.confusions: list[np.ndarray] = []  # multi-class: (C, C)
        self.areas: list[float] = []

    def add(self, name: str, probs: torch.Tensor, full: np.ndarray) -> None:
        """probs (C, h, w) for one image, full (H, W) its original-size index mask."""
        self.add_levels(name, postprocess.to_uint8(probs), full)

    def add_levels(self, name: str, q: np.ndarray, full: np.ndarray) -> None:
        """q: the uint8 (C, h, w) probabilities the shards hold."""
        self.names.append(name)
        self.areas.append(float((full > 0).mean()))
        self.size = full.shape
        prob = postprocess.levels(postprocess.car_probability(q), full.shape)
        counts = dice_counts(prob, full > 0)
        self.curves.append(dice_curve(counts))
        self.above.append(above_tops(counts))
        if self.classes > 1:
            self.confusions.append(confusion(postprocess.class_maps(q, full.shape), full, self.classes))

    def __len__(self) -> int:
        return len(self.names)

    def dice(self, threshold: float = 0.5) -> float:
        """Mean per-image Dice of the car at a threshold: Kaggle's score."""
        return float(np.mean([c[postprocess.cut(threshold)] for c in self.curves]))

    def per_image(self, threshold: float = 0.5) -> np.ndarray:
        return np.array([c[postprocess.cut(threshold)] for c in self.curves])

    def sweep(self, low: float, high: float) -> tuple[float, float, list[tuple[float, float]]]:
        """(best threshold, its Dice, [(threshold, Dice)...]) over every uint8 cut in [low, high]."""
        mean = np.mean(self.curves, axis=0)
        cuts = range(postprocess.cut(low), postprocess.cut(high) + 1)
        table = [(k / 255.0, float(mean[k])) for k in cuts]
        best = max(table, key=lambda row: row[1])
        return best[0], best[1], table

    def choose(self, low: float, high: float, empty_rule: bool = False) -> tuple[list[Rule], dict, list[dict]]:
        """(the rule to submit with, the metrics it reaches, the sweep table) on these images; with `empty_rule`, the
        empty-mask rule where it raises the Dice."""
        threshold, dice, sweep = self.sweep(low, high)
        rule = Rule(float(threshold))
        metrics = {"dice": dice, "threshold": float(threshold), "dice_at_0_5": self.dice(0.5)}
        if empty_rule:
            cuts = np.arange(postprocess.cut(low), postprocess.cut(high) + 1)
            empty = np.array([a == 0 for a in self.areas])
            minimums = _minimums(self.size)
            found, triplet = best_empty_rule(np.array(self.curves), np.array(self.above), empty, cuts, minimums)
            if triplet is not None and found > dice:
                rule, metrics = triplet, {**metrics, "dice": found, "dice_without_empty_rule": dice}
                metrics["threshold"] = triplet.threshold
        return [rule], metrics, [{"threshold": t, "dice": d} for t, d in sweep]

    def per_rule(self, rules: list[Rule]) -> np.ndarray:
        """Each image's score under the chosen rule."""
        empty = np.array([a == 0 for a in self.areas])
        return rule_scores(rules[0], np.array(self.curves), np.array(self.above), empty)

    def class_scores(self) -> dict[str, np.ndarray]:
        return class_scores(np.sum(self.confusions, axis=0))

    def selection_score(self) -> float:
        """What 'best' means for a checkpoint: the car's Dice, or the mean Dice of the classes but background."""
        return self.dice(0.5) if self.classes == 1 else float(self.class_scores()["dice"][1:].mean())


AREA_FRACTIONS = (0.0, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2)  # minimum object areas tried, of the image
THRESHOLD_STEP = 0.05  # thresholds tried with an area rule: a labelling of the objects each


def _minimums(size: tuple[int, int]) -> list[int]:
    """The pixel counts tried as minimums (of objects, or of pixels above a top threshold): fractions of the image."""
    return sorted({int(round(f * size[0] * size[1])) for f in AREA_FRACTIONS})


class PairScoreboard:
    """Severstal's metric: the mean Dice over every (image, class) pair, 1 where both masks are empty.

    Masks are bit masks (bit c set: class c + 1 is there, the classes may overlap) and the model has one sigmoid
    channel per class. Per pair it keeps the Dice at all 256 cuts (the threshold sweep and the training's
    validation) and, with `areas`, the Dice for a grid of thresholds x minimum object areas, from which `choose`
    picks a threshold and an area per class: the classes' pairs are disjoint, so the best rule of each class makes
    the best rule overall.
    """

    def __init__(self, classes: int, areas: bool = False):
        self.classes, self.with_areas = classes, areas
        self.names: list[str] = []
        self.curves: list[np.ndarray] = []  # (classes, 256) Dice per cut
        self.above: list[np.ndarray] = []  # (classes, len(TOPS)) pixels above each top threshold
        self.grids: list[np.ndarray] = []  # (classes, thresholds, areas) Dice
        self.empty: list[np.ndarray] = []  # (classes,) True where the truth is empty
        self.areas: list[float] = []
        self.thresholds: list[float] = []
        self.min_areas: list[int] = []

    def _grid_for(self, size: tuple[int, int], low: float = 0.2, high: float = 0.8) -> None:
        if not self.min_areas:
            self.min_areas = _minimums(size)
            steps = np.arange(low, high + 1e-9, THRESHOLD_STEP)
            self.thresholds = sorted({round(float(t), 4) for t in steps} | {0.5})

    def add(self, name: str, probs: torch.Tensor, full: np.ndarray) -> None:
        """probs (C, h, w) sigmoid probabilities of one image, full (H, W) its original-size bit mask."""
        self.add_levels(name, postprocess.to_uint8(probs), full)

    def add_levels(self, name: str, q: np.ndarray, full: np.ndarray) -> None:
        """q: the uint8 (C, h, w) probabilities the shards hold."""
        self.names.append(name)
        self.areas.append(float((full > 0).mean()))
        truths = [(full >> c) & 1 for c in range(self.classes)]
        self.empty.append(np.array([not t.any() for t in truths]))
        levels = [postprocess.levels(q[c], full.shape) for c in range(self.classes)]
        counts = [dice_counts(lv, t) for lv, t in zip(levels, truths, strict=True)]
        self.curves.append(np.stack([dice_curve(c) for c in counts]))
        self.above.append(np.stack([above_tops(c) for c in counts]))
        self.size = full.shape
        if self.with_areas:
            self._grid_for(full.shape)
            self.grids.append(np.stack([self._grid(lv, t) for lv, t in zip(levels, truths, strict=True)]))

    def _grid(self, levels: np.ndarray, truth: np.ndarray) -> np.ndarray:
        """(thresholds, areas) Dice of one pair: the objects above each cut, and how much of the truth each holds."""
        out = np.empty((len(self.thresholds), len(self.min_areas)))
        total = int(truth.sum())
        sizes_at = np.array(self.min_areas)
        for i, t in enumerate(self.thresholds):
            mask = levels > postprocess.cut(t)
            if not mask.any():
                out[i] = 1.0 if total == 0 else 0.0
                continue
            labels, sizes = postprocess.objects(mask)
            inter = np.bincount(labels[truth.astype(bool)], minlength=len(sizes))
            keep = sizes[None, 1:] >= sizes_at[:, None]  # (areas, objects)
            pred, hit = keep @ sizes[1:], keep @ inter[1:]
            denom = pred + total
            out[i] = np.where(denom == 0, 1.0, 2.0 * hit / np.maximum(denom, 1))
        return out

    def __len__(self) -> int:
        return len(self.names)

    def dice(self, threshold: float = 0.5) -> float:
        """Mean Dice over the pairs at one threshold for every class, no area rule."""
        return float(np.mean([c[:, postprocess.cut(threshold)] for c in self.curves]))

    def selection_score(self) -> float:
        return self.dice(0.5)

    def all_empty(self) -> float:
        """The score of a submission with no mask at all: the share of pairs whose truth is empty."""
        return float(np.mean(self.empty))

    def choose(self, low: float, high: float, empty_rule: bool = False) -> tuple[list[Rule], dict, list[dict]]:
        """Per class the threshold (and, with `areas`, the minimum area; with `empty_rule`, the empty-mask rule) of
        its best mean Dice on these images."""
        curves = np.mean(self.curves, axis=0)  # (classes, 256)
        cuts = np.arange(postprocess.cut(low), postprocess.cut(high) + 1)
        best_cut = cuts[np.argmax(curves[:, cuts], axis=1)]
        no_area = [Rule(int(k) / 255.0) for k in best_cut]
        rules = no_area
        if self.with_areas:
            grid = np.mean(self.grids, axis=0)  # (classes, thresholds, areas)
            allowed = [i for i, t in enumerate(self.thresholds) if low - 1e-9 <= t <= high + 1e-9]
            rules = []
            for c in range(self.classes):
                flat = grid[c][allowed]
                i, a = np.unravel_index(np.argmax(flat), flat.shape)
                with_area = Rule(self.thresholds[allowed[i]], self.min_areas[a])
                rules.append(with_area if flat[i, a] > curves[c, best_cut[c]] else no_area[c])  # only what helps
        if empty_rule:
            rules = [self._with_empty_rule(c, rule, cuts) for c, rule in enumerate(rules)]
        per_class = self._per_class(rules)
        metrics = {
            "dice": float(np.mean(per_class)),
            "dice_without_area_rule": float(np.mean(curves[np.arange(self.classes), best_cut])),
            "dice_at_0_5": self.dice(0.5),
            "all_empty": self.all_empty(),
        }
        sweep = [
            {"threshold": int(k) / 255.0, "dice": float(curves[:, k].mean()), **{f"class_{c + 1}": float(curves[c, k])
             for c in range(self.classes)}}
            for k in cuts
        ]  # fmt: skip
        return rules, metrics, sweep

    def _with_empty_rule(self, c: int, rule: Rule, cuts: np.ndarray) -> Rule:
        """The class's rule, or the empty-mask rule where that scores higher on these images."""
        current = self._pair_dice([rule if k == c else Rule(0.5) for k in range(self.classes)])[:, c].mean()
        empty = np.array([e[c] for e in self.empty])
        curves, above = np.array([x[c] for x in self.curves]), np.array([x[c] for x in self.above])
        found, triplet = best_empty_rule(curves, above, empty, cuts, _minimums(self.size))
        return triplet if triplet is not None and found > current else rule

    def _pair_dice(self, rules: list[Rule]) -> np.ndarray:
        """(images, classes) Dice of every pair under per-class rules."""
        out = np.empty((len(self), self.classes))
        for c, rule in enumerate(rules):
            if rule.top_pixels:
                curves, above = np.array([x[c] for x in self.curves]), np.array([x[c] for x in self.above])
                out[:, c] = rule_scores(rule, curves, above, np.array([e[c] for e in self.empty]))
            elif rule.min_area and self.with_areas:
                i, a = self.thresholds.index(rule.threshold), self.min_areas.index(rule.min_area)
                out[:, c] = [g[c, i, a] for g in self.grids]
            else:
                out[:, c] = [curve[c, postprocess.cut(rule.threshold)] for curve in self.curves]
        return out

    def _per_class(self, rules: list[Rule]) -> np.ndarray:
        return self._pair_dice(rules).mean(axis=0)

    def per_rule(self, rules: list[Rule]) -> np.ndarray:
        """Each image's mean Dice over its classes under the chosen rules."""
        return self._pair_dice(rules).mean(axis=1)

    def class_report(self, rules: list[Rule], names: list[str]) -> dict[str, dict]:
        """Per class: its Dice under its rule, the rule, and its Dice without the area rule."""
        per_class = self._per_class(rules)
        plain = self._per_class([Rule(r.threshold) for r in rules])
        return {
            name: {"dice": float(d), "threshold": r.threshold, "min_area": r.min_area, "dice_without_area": float(p)}
            | ({"empty_rule": {"top": r.top, "pixels": r.top_pixels}} if r.top_pixels else {})
            for name, d, r, p in zip(names, per_class, rules, plain, strict=True)
        }
