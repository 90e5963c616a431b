"""The competition's metric of the trained models on their validation folds, at full size: `dvc repro evaluate`.

The models run as predict runs them (predict.amp's precision, predict.tta's flips) and their probabilities are
rounded to predict's uint8 levels, then up-sampled to each image's size before the rules are applied, exactly as
the submission will be; every threshold between evaluate.threshold_min and threshold_max is tried (and, where
the competition rewards it, a minimum object area per class), and the best rules are what the encode stage and
`carvana predict` use (predictor.json, beside metrics.json, threshold_sweep.csv, per_image.csv and worst/ in
reports/evaluate).
"""

import json
import shutil
from pathlib import Path

import pandas as pd

from pipeline import params, runtime
from pipeline.competitions import open_competition
from pipeline.errors import run_stage
from pipeline.evaluation import evaluate
from pipeline.masks import recipe

RAW, SPLIT, MODELS, OUT = Path("data/raw"), Path("data/split.csv"), Path("models"), Path("reports/evaluate")


def main() -> None:
    p = params.load("download", "split", "evaluate", "predict")
    e, pr, folds, d = p["evaluate"], p["predict"], p["split"].validation_folds(), p["download"]
    rt = runtime.for_inference(pr.amp)  # predict's: the rules are chosen on the numbers predict will submit
    comp = open_competition(RAW, d.competition, d.hq)
    table = pd.read_csv(SPLIT)
    board, fold_of = evaluate.evaluate_folds(
        comp, table, MODELS, folds, batch_size=pr.batch_size, workers=pr.workers, tta=pr.tta, rt=rt
    )
    rules, metrics, sweep, per_image = evaluate.summarize(board, comp, fold_of, e.threshold_min, e.threshold_max)
    metrics.update(images=len(board), folds=folds, tta=pr.tta)
    shutil.rmtree(OUT, ignore_errors=True)
    (OUT / "worst").mkdir(parents=True)
    sweep.to_csv(OUT / "threshold_sweep.csv", index=False)
    per_image.to_csv(OUT / "per_image.csv", index=False, float_format="%.6f")
    (OUT / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    recipe.write(OUT / "predictor.json", [MODELS / f"fold{k}" / "best.pt" for k in folds], rules, pr.tta, pr.amp)
    params.check_unchanged(p)

    scores = dict(zip(per_image["img"], per_image["dice"], strict=True))
    for fold, worst in per_image.head(e.worst).groupby("fold")["img"]:
        for name, picture in evaluate.pictures(
            MODELS / f"fold{fold}" / "best.pt", comp, worst.tolist(), rules, rt, pr.tta, scores
        ):
            picture.save(OUT / "worst" / f"{name.rsplit('.', 1)[0]}.jpg", quality=88)
    rule = "rules per class" if len(set(rules)) > 1 else f"threshold {rules[0].threshold:.3f}"
    print(
        f"{OUT}: Dice {metrics['dice']:.5f} over {len(board)} validation images (full size, {rule})"
        + (f"; mean IoU {metrics['mean_iou']:.4f} over {comp.channels} classes" if "mean_iou" in metrics else "")
    )


if __name__ == "__main__":
    run_stage(main)
