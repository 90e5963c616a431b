"""Full-resolution scores of predicted probabilities against the original masks.

Probabilities at the model size go through exactly the path of the submission (uint8, bilinear
up-sampling to the original size, then a cut; see postprocess), so the Dice reported here is the Dice
Kaggle computes for the submission.
Binary masks keep, per image, the Dice at all 256 cuts; multi-class masks keep a confusion matrix.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch.utils.data import DataLoader

from pipeline.data.datasets import Preprocess, ValidationDataset
from pipeline.data.images import decode_mask
from pipeline.download.competition import Competition
from pipeline.evaluation import metrics, overlay
from pipeline.models import checkpoint
from pipeline.prediction.inference import probabilities
from pipeline.submission import postprocess


def class_maps(probs: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """(C, h, w) softmax probabilities -> (H, W) class indices, deciding after up-sampling each class."""
    stacked = np.stack([postprocess.upsample(q, size) for q in postprocess.to_uint8(probs)])
    return stacked.argmax(axis=0).astype(np.uint8)


def car_probability(probs: torch.Tensor) -> np.ndarray:
    """uint8 (h, w) probability of the car: the one channel, or 1 - P(background) with several classes."""
    q = postprocess.to_uint8(probs[0])
    return q if probs.shape[0] == 1 else 255 - q


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
        prob = postprocess.levels(car_probability(probs), full.shape)
        self.curves.append(metrics.dice_curve(metrics.dice_counts(prob, full > 0)))
        if self.classes > 1:
            self.confusions.append(metrics.confusion(class_maps(probs, full.shape), full, self.classes))

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
        return metrics.class_scores(np.sum(self.confusions, axis=0))

    def selection_score(self) -> float:
        """What 'best' means for a checkpoint: the car's Dice, or the mean Dice of the classes but background."""
        return self.dice(0.5) if self.classes == 1 else float(self.class_scores()["dice"][1:].mean())


def _collate(batch):
    images, _, full, index = zip(*batch)
    return torch.stack(images), list(full), torch.tensor(index)


def evaluate_folds(
    comp: Competition,
    table: pd.DataFrame,
    models: Path,
    folds: list[int],
    *,
    batch_size: int,
    workers: int,
    tta: bool,
    device: torch.device,
) -> tuple[Scoreboard, dict[str, int]]:
    """Score each fold's best model on its own validation images (out-of-fold when every fold is trained)."""
    board, fold_of = None, {}
    for fold in folds:
        ckpt = checkpoint.load(models / f"fold{fold}" / "best.pt")
        model = checkpoint.build_model(ckpt).to(device)
        pre = Preprocess.from_dict(ckpt["preprocess"])
        classes = ckpt["model"]["classes"]
        board = board or Scoreboard(classes)
        names = table.loc[table["fold"] == fold, "img"].tolist()
        loader = DataLoader(
            ValidationDataset(comp, names, pre, classes),
            batch_size=batch_size,
            num_workers=workers,
            collate_fn=_collate,
        )
        for x, full, index in loader:
            probs = probabilities([model], x.to(device), tta).cpu()
            for i, j in enumerate(index.tolist()):
                board.add(names[j], probs[i], full[i].numpy())
                fold_of[names[j]] = fold
    return board, fold_of


def pictures(
    best: Path,
    comp: Competition,
    names: list[str],
    threshold: float,
    device: torch.device,
    tta: bool = False,
    scores: dict[str, float] | None = None,
) -> list[tuple[str, Image.Image]]:
    """(name, picture) of train images predicted by a model: hits green, misses blue, extra pixels red."""
    ckpt = checkpoint.load(best)
    model = checkpoint.build_model(ckpt).to(device)
    pre = Preprocess.from_dict(ckpt["preprocess"])
    classes = ckpt["model"]["classes"]
    out = []
    for name in names:
        data = comp.train.read(name)
        x, original = pre.load(data, name)
        probs = probabilities([model], x[None].to(device), tta)[0].cpu()
        truth = decode_mask(comp.read_mask(name), name, classes, expected=original) > 0
        pred = postprocess.binary_mask(car_probability(probs), original, threshold)
        caption = name if scores is None else f"{name}  Dice {scores[name]:.4f}"
        rgb = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
        out.append((name, overlay.compare(rgb, pred, truth, caption=caption)))
    return out
