"""Kaggle-exact Dice of the trained models on their validation folds: `dvc repro evaluate`.

Probabilities are up-sampled to 1918x1280 before thresholding, exactly as the submission will be;
every threshold between evaluate.threshold_min and threshold_max is tried, and the best one is what
the encode stage and `carvana predict` use (predictor.json, beside metrics.json, threshold_sweep.csv,
per_image.csv and worst/ in reports/evaluate).
"""

import json
import shutil
from pathlib import Path

import pandas as pd

from pipeline import params, runtime
from pipeline.data import datasets
from pipeline.download import competition
from pipeline.errors import run_stage
from pipeline.evaluation import evaluate
from pipeline.prediction import recipe

RAW, SPLIT, MODELS, OUT = Path("data/raw"), Path("data/split.csv"), Path("models"), Path("reports/evaluate")


def main() -> None:
    p = params.load("download", "split", "evaluate", "predict")
    e, pr, folds = p["evaluate"], p["predict"], p["split"].validation_folds()
    device = runtime.device()
    comp = competition.open_competition(RAW, p["download"].hq)
    table = pd.read_csv(SPLIT)
    board, fold_of = evaluate.evaluate_folds(
        comp, table, MODELS, folds, batch_size=pr.batch_size, workers=pr.workers, tta=pr.tta, device=device
    )
    shutil.rmtree(OUT, ignore_errors=True)
    (OUT / "worst").mkdir(parents=True)
    threshold, dice, sweep = board.sweep(e.threshold_min, e.threshold_max)
    metrics = {
        "dice": dice,
        "threshold": threshold,
        "dice_at_0_5": board.dice(0.5),
        "images": len(board),
        "folds": folds,
        "tta": pr.tta,
    }
    pd.DataFrame(sweep, columns=["threshold", "dice"]).to_csv(OUT / "threshold_sweep.csv", index=False)
    if board.classes > 1:
        scores = board.class_scores()
        metrics.update(
            mean_iou=float(scores["iou"].mean()),
            mean_class_dice=float(scores["dice"][1:].mean()),
            classes={
                n: {"dice": float(d), "iou": float(i)}
                for n, d, i in zip(datasets.class_names(RAW), scores["dice"], scores["iou"], strict=True)
            },
        )
    per_image = pd.DataFrame(
        {
            "img": board.names,
            "fold": [fold_of[n] for n in board.names],
            "dice": board.per_image(threshold),
            "mask_area": board.areas,
        }
    ).sort_values("dice")
    per_image.to_csv(OUT / "per_image.csv", index=False, float_format="%.6f")
    (OUT / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    recipe.write(OUT / "predictor.json", [MODELS / f"fold{k}" / "best.pt" for k in folds], threshold, pr.tta)
    params.check_unchanged(p)

    scores = dict(zip(per_image["img"], per_image["dice"], strict=True))
    for fold, worst in per_image.head(e.worst).groupby("fold")["img"]:
        for name, picture in evaluate.pictures(
            MODELS / f"fold{fold}" / "best.pt", comp, worst.tolist(), threshold, device, pr.tta, scores
        ):
            picture.save(OUT / "worst" / f"{name.rsplit('.', 1)[0]}.jpg", quality=88)
    print(
        f"{OUT}: Dice {dice:.5f} over {len(board)} validation images (full size, threshold {threshold:.3f})"
        + (f"; mean IoU {metrics['mean_iou']:.4f} over {board.classes} classes" if board.classes > 1 else "")
    )


if __name__ == "__main__":
    run_stage(main)
