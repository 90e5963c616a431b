"""The competition's metric of the trained models on their validation folds, at full size: `dvc repro evaluate`.

The models run as predict runs them (predict.amp's precision, float32 under ONNX Runtime, predict.tta's flips)
and their probabilities are rounded to predict's uint8 levels, then up-sampled to each image's size before the
rules are applied, exactly as the submission will be; every threshold between evaluate.threshold_min and
threshold_max is tried (and, where the competition rewards it, a minimum object area per class), and the best rules
are what the encode stage and `kseg predict` use (predictor.json, beside metrics.json, threshold_sweep.csv,
per_image.csv and worst/ in reports/evaluate). The maps scored are kept in data/oof, out of fold once every fold
is trained.

With `blend.members`, the models scored are none of this experiment's: the members' out-of-fold maps choose the
blend's weights (blend.json, which predict reads) and its rules, and the blend's maps go to data/oof.
"""

import json
import shutil

import pandas as pd

from pipeline import members, params, paths, runtime
from pipeline.competitions import open_competition
from pipeline.errors import UserError, run_stage
from pipeline.evaluation import blend, evaluate, pictures
from pipeline.masks import recipe
from pipeline.paths import CHECKPOINTS, EVALUATION, INPUTS, MODELS, OOF, PLAN, RAW, SPLIT
from pipeline.planning import resolve
from pipeline.prediction import shards

OUT = EVALUATION
RESOLVED, FETCHED = INPUTS / "blend.json", CHECKPOINTS / "members"


def blend_members(comp, table: pd.DataFrame, names: list[str], low: float, high: float):
    """(the blend, its members as blend.json lists them: commit, outs, weight, TTA and precision)."""
    found = json.loads(RESOLVED.read_text())["members"]
    if [m["name"] for m in found] != names:
        raise UserError(f"{RESOLVED} lists other members than blend.members; run `dvc repro` (its inputs stage)")
    folders = [members.fetch(m, FETCHED) for m in found]
    recipes = [recipe.read(f / members.RECIPE) for f in folders]
    chosen = blend.choose(
        comp,
        table["img"].tolist(),
        [(m["name"], f / "data/oof") for m, f in zip(found, folders, strict=True)],
        OOF,
        low,
        high,
    )
    spec = [
        {**m, "weight": w, "tta": r["tta"], "amp": r["amp"]}
        for m, w, r in zip(found, chosen.weights, recipes, strict=True)
    ]
    return chosen, spec


def main() -> None:
    given = params.load("download", "split", "evaluate", "blend", "predict")
    p = resolve.resolved(given, PLAN, "evaluate", "predict")  # the threshold range, empty-mask rule and TTA set planned
    e, pr, folds, d = p["evaluate"], p["predict"], p["split"].validation_folds(), p["download"]
    rt = runtime.for_inference(pr.mixed_precision)  # predict's: the rules are chosen on the numbers it submits
    comp = open_competition(RAW, d.competition, d.hq)
    table = pd.read_csv(SPLIT)
    shutil.rmtree(OOF, ignore_errors=True)
    spec = []
    if p["blend"].members:
        chosen, spec = blend_members(comp, table, p["blend"].members, e.threshold_min, e.threshold_max)
        board, fold_of, folds = (
            chosen.board,
            dict(zip(table["img"], table["fold"], strict=True)),
            sorted(table["fold"].unique()),
        )
    else:
        tta_boards = {name: comp.scoreboard() for name in e.tta_sets}
        board, fold_of = evaluate.evaluate_folds(
            comp, table, MODELS, folds, batch_size=pr.batch_size, workers=pr.workers, tta=pr.tta, rt=rt, oof=OOF,
            tta_boards=tta_boards,
        )  # fmt: skip
    rules, metrics, sweep, per_image = evaluate.summarize(
        board, comp, fold_of, e.threshold_min, e.threshold_max, e.empty_rule
    )
    metrics.update(images=len(board), folds=[int(k) for k in folds], tta=pr.tta)
    if not spec and e.tta_sets:  # each set's best Dice on the same images, to choose predict.tta by
        metrics["tta_sets"] = {n: b.choose(e.threshold_min, e.threshold_max)[1]["dice"] for n, b in tta_boards.items()}
    if spec:
        metrics["blend"] = {
            "dice": chosen.dice,
            "members": {m["name"]: d for m, d in zip(spec, chosen.member_dice, strict=True)},
            "weights": {m["name"]: m["weight"] for m in spec},
        }
        metrics["tta"] = [m["tta"] for m in spec]
    shutil.rmtree(OUT, ignore_errors=True)
    (OUT / "worst").mkdir(parents=True)
    sweep.to_csv(OUT / "threshold_sweep.csv", index=False)
    per_image.to_csv(OUT / "per_image.csv", index=False, float_format="%.6f")
    (OUT / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    (OUT / "blend.json").write_text(json.dumps({"members": spec}, indent=2) + "\n")
    checkpoints = [] if spec else [paths.model(k) for k in folds]
    recipe.write(OUT / "predictor.json", checkpoints, rules, pr.tta, pr.mixed_precision, spec)
    params.check_unchanged(given)

    maps = shards.Maps(OOF)  # the worst images as scored: their out-of-fold maps under the chosen rules
    try:
        for name, dice in per_image.head(e.worst)[["img", "dice"]].itertuples(index=False):
            original, probs = maps.read(name)
            picture = pictures.picture(comp, name, probs, original, rules, f"{name}  Dice {dice:.4f}")
            picture.save(OUT / "worst" / f"{name.rsplit('.', 1)[0]}.jpg", quality=88)
    finally:
        maps.close()
    rule = "rules per class" if len(set(rules)) > 1 else f"threshold {rules[0].threshold:.3f}"
    what = f"out-of-fold images, a blend of {len(spec)} experiments" if spec else "validation images"
    print(
        f"{OUT}: Dice {metrics['dice']:.5f} over {len(board)} {what} (full size, {rule})"
        + (f"; mean IoU {metrics['mean_iou']:.4f} over {comp.channels} classes" if "mean_iou" in metrics else "")
    )
    if spec:
        for m, dice in zip(spec, chosen.member_dice, strict=True):
            print(f"  {m['name']} ({m['rev'][:7]}): out-of-fold Dice {dice:.5f} alone, weight {m['weight']:.2f}")


if __name__ == "__main__":
    run_stage(main)
