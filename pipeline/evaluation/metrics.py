"""Kaggle's Carvana metric and the multi-class scores, at full resolution, and their accumulator.

Dice is per image, 1 when both masks are empty, then averaged over images. For a uint8 probability
map, the two histograms (all pixels, truth pixels) give the exact Dice at every one of the 256
possible thresholds in one pass, which is how the threshold sweep costs no more than one evaluation.
"""

from __future__ import annotations

import numpy as np
import torch

from pipeline import rle
from pipeline.submission import postprocess


def dice_counts(prob: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """(2, 256) int64: histogram of the uint8 probabilities over all pixels, and over truth pixels."""
    q = torch.from_numpy(np.ascontiguousarray(prob).reshape(-1))
    t = torch.from_numpy(np.ascontiguousarray(truth, dtype=np.uint8).reshape(-1))
    every = torch.bincount(q, minlength=256)
    positive = torch.bincount(q * t, minlength=256)  # bin 0 also holds every non-truth pixel ...
    positive[0] = int(t.sum()) - int(positive[1:].sum())  # ... so rebuild it from the truth count
    return torch.stack([every, positive]).numpy().astype(np.int64)


def dice_curve(counts: np.ndarray) -> np.ndarray:
    """Dice for every cut k = 0..255 (prediction = probability > k), from `dice_counts`."""
    above = np.cumsum(counts[:, ::-1], axis=1)[:, ::-1]  # above[:, k] = count of values >= k
    pred = np.append(above[0, 1:], 0)  # values > k
    inter = np.append(above[1, 1:], 0)
    truth = counts[1].sum()
    denom = pred + truth
    return np.where(denom == 0, 1.0, 2.0 * inter / np.maximum(denom, 1))


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


def submission_dice(submission: dict[str, str], truth: dict[str, str], shape: tuple[int, int]) -> float:
    """Carvana's score of a submission ({img: rle_mask}) against the true RLEs."""
    return float(
        np.mean([dice(rle.decode(submission[n], shape), rle.decode(code, shape)) for n, code in truth.items()])
    )


class Scoreboard:
    """Per-image full-resolution scores of one evaluation.

    Every model is scored as Carvana scores it, on the car (for a multi-class model: not background),
    with the Dice at all 256 cuts per image; multi-class models also keep a confusion matrix per image.
    """

    def __init__(self, classes: int):
        self.classes = classes  # model output channels: 1 = binary
        self.names: list[str] = []
        self.curves: list[np.ndarray] = []  # (256,) car Dice per cut
        self.confusions: list[np.ndarray] = []  # multi-class: (C, C)
        self.areas: list[float] = []

    def add(self, name: str, probs: torch.Tensor, full: np.ndarray) -> None:
        """probs (C, h, w) for one image, full (H, W) its original-size index mask."""
        self.names.append(name)
        self.areas.append(float((full > 0).mean()))
        q = postprocess.to_uint8(probs)
        prob = postprocess.levels(postprocess.car_probability(q), full.shape)
        self.curves.append(dice_curve(dice_counts(prob, full > 0)))
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

    def class_scores(self) -> dict[str, np.ndarray]:
        return class_scores(np.sum(self.confusions, axis=0))

    def selection_score(self) -> float:
        """What 'best' means for a checkpoint: the car's Dice, or the mean Dice of the classes but background."""
        return self.dice(0.5) if self.classes == 1 else float(self.class_scores()["dice"][1:].mean())
