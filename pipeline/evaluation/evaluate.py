"""The evaluate stage's loop: each fold's model on its own validation images, scored at full resolution (the
pictures of its worst images: pipeline.evaluation.pictures).

Probabilities at the model size go through exactly the path of the submission (uint8, bilinear up-sampling to
the original size, then the competition's rules; see masks.postprocess), so the score reported here is the score
Kaggle computes for the submission. The per-image scores accumulate in the competition's scoreboard, which also
chooses the rules (a threshold, and where the competition rewards it a minimum object area per class).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from torch.utils.data import DataLoader

from pipeline import paths
from pipeline.competitions import Competition
from pipeline.data.datasets import ValidationDataset, collate_validation
from pipeline.masks import postprocess
from pipeline.prediction import shards
from pipeline.prediction.predictor import load_predictor
from pipeline.runtime import Runtime

OOF_SHARD = 500  # images per shard of out-of-fold maps


def evaluate_folds(
    comp: Competition,
    table: pd.DataFrame,
    models: Path,
    folds: list[int],
    *,
    batch_size: int,
    workers: int,
    tta: str,
    rt: Runtime,
    oof: Path,
    tta_boards: dict | None = None,
):
    """Score each fold's best model on its own validation images (out-of-fold when every fold is trained), under
    `rt`'s precision and memory format, keeping the uint8 maps scored as shards in `oof` (what a blend of
    experiments reads); (the scoreboard, {image: fold}). `tta_boards` ({TTA set: scoreboard}) also score the
    same images under other TTA sets, each in its own passes."""
    board, fold_of = comp.scoreboard(areas=True), {}
    names_all = table.loc[table["fold"].isin(folds), "img"].tolist()
    sequence, written = None, 0
    for fold in folds:
        predictor = load_predictor([paths.model(fold, models)], rt.device, rt.memory_format)
        names = table.loc[table["fold"] == fold, "img"].tolist()
        loader = DataLoader(
            ValidationDataset(comp, names, predictor.pre),
            batch_size=batch_size,
            num_workers=workers,
            collate_fn=collate_validation,
        )
        for x, _, full, index in loader:
            x = x.to(rt.device).contiguous(memory_format=rt.memory_format)
            probs = postprocess.to_uint8(predictor(x, tta, rt.autocast))
            for other, scored in (tta_boards or {}).items():
                others = postprocess.to_uint8(predictor(x, other, rt.autocast))
                for i, j in enumerate(index.tolist()):
                    scored.add_levels(names[j], others[i], full[i].numpy())
            sequence = sequence or shards.ShardSequence(oof, shards.prepare(
                oof, "oof", len(names_all), OOF_SHARD, predictor.classes, predictor.class_names, predictor.pre.size,
                predictor.labels, train_set=comp.content(sorted(names_all)),
            ))  # fmt: skip
            for i, j in enumerate(index.tolist()):
                board.add_levels(names[j], probs[i], full[i].numpy())
                fold_of[names[j]] = fold
                sequence.add(written, names[j], probs[i], list(full[i].shape))
                written += 1
    return board, fold_of


def summarize(board, comp: Competition, fold_of: dict[str, int], low: float, high: float, empty_rule: bool = False):
    """The rules to submit with and what they reach: (rules, metrics, threshold sweep, per-image table); with
    `empty_rule`, the empty-mask rule where it raises the Dice."""
    rules, metrics, sweep = board.choose(low, high, empty_rule)
    if comp.labels == "multilabel":
        metrics["classes"] = board.class_report(rules, comp.class_names)
    elif comp.labels == "multiclass":
        scores = board.class_scores()
        metrics.update(
            mean_iou=float(scores["iou"].mean()),
            mean_class_dice=float(scores["dice"][1:].mean()),
            classes={
                n: {"dice": float(d), "iou": float(i)}
                for n, d, i in zip(comp.class_names, scores["dice"], scores["iou"], strict=True)
            },
        )
    per_image = pd.DataFrame(
        {
            "img": board.names,
            "fold": [fold_of[n] for n in board.names],
            "dice": board.per_rule(rules),
            "mask_area": board.areas,
        }
    ).sort_values("dice")
    return rules, metrics, pd.DataFrame(sweep), per_image
