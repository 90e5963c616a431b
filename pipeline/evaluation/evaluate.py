"""The evaluate stage's loop: each fold's model on its own validation images, scored at full resolution.

Probabilities at the model size go through exactly the path of the submission (uint8, bilinear
up-sampling to the original size, then a cut; see postprocess), so the Dice reported here is the Dice
Kaggle computes for the submission. The per-image scores accumulate in a metrics.Scoreboard.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch.utils.data import DataLoader

from pipeline.data.datasets import ValidationDataset, collate_validation
from pipeline.data.images import decode_mask
from pipeline.download.competition import Competition
from pipeline.evaluation import overlay
from pipeline.evaluation.metrics import Scoreboard
from pipeline.prediction.predictor import load_predictor
from pipeline.submission import postprocess


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
        predictor = load_predictor([models / f"fold{fold}" / "best.pt"], device)
        board = board or Scoreboard(predictor.classes)
        names = table.loc[table["fold"] == fold, "img"].tolist()
        loader = DataLoader(
            ValidationDataset(comp, names, predictor.pre, predictor.classes),
            batch_size=batch_size,
            num_workers=workers,
            collate_fn=collate_validation,
        )
        for x, _, full, index in loader:
            probs = predictor(x.to(device), tta).cpu()
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
    predictor = load_predictor([best], device)
    out = []
    for name in names:
        data = comp.train.read(name)
        x, original = predictor.pre.load(data, name)
        probs = postprocess.to_uint8(predictor(x[None].to(device), tta)[0])
        truth = decode_mask(comp.read_mask(name), name, predictor.classes, expected=original) > 0
        pred = postprocess.binary_mask(postprocess.car_probability(probs), original, threshold)
        caption = name if scores is None else f"{name}  Dice {scores[name]:.4f}"
        rgb = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
        out.append((name, overlay.compare(rgb, pred, truth, caption=caption)))
    return out
