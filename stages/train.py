"""Train one U-Net per validation fold: `dvc repro train` -> models/fold<k>/best.pt.

Training state (last.pt after every epoch, best.pt) lives in checkpoints/train/fold<k>/, which DVC
never restores or deletes: a killed `dvc repro` or `dvc exp run` resumes from the last finished epoch.

split.fold picks the held-out fold (`all`: one model per fold). With train.nproc > 1 the stage
relaunches itself under torchrun (DDP: one process per GPU, or gloo processes on a CPU).
"""

import shutil
from pathlib import Path

import pandas as pd

from pipeline import budget, params, runtime, training
from pipeline.competitions import open_competition
from pipeline.errors import run_stage
from pipeline.evaluation import evaluate
from pipeline.masks.postprocess import Rule

RAW, SPLIT, MODELS, LIVE = Path("data/raw"), Path("data/split.csv"), Path("models"), Path("dvclive/train")
STATE = Path("checkpoints/train")  # last.pt and best.pt while training: DVC never restores or deletes it


def main() -> None:
    p = params.load("download", "split", "train")
    t, folds = p["train"], p["split"].validation_folds()
    status = runtime.relaunch(__file__, t.nproc, t.nnodes, t.rdzv_endpoint)
    if status is not None:
        raise SystemExit(status)
    rt = training.setup(t)
    comp = open_competition(RAW, p["download"].competition, p["download"].hq)
    table = pd.read_csv(SPLIT)
    if rt.main:
        data = budget.competition_data(comp)
        print(budget.report([budget.train_cost(p, data, rt)], data, rt))
    from dvclive import Live

    live = Live(str(LIVE), dvcyaml=None, save_dvc_exp=False, report=None) if rt.main else None
    results = [training.train_fold(t, rt, comp, table, k, STATE / f"fold{k}", live) for k in folds]
    if live is not None:
        params.check_unchanged(p)
        for k in folds:  # the out: each fold's best model, once its training is complete
            (MODELS / f"fold{k}").mkdir(parents=True, exist_ok=True)
            shutil.copyfile(STATE / f"fold{k}" / "best.pt", MODELS / f"fold{k}" / "best.pt")
        for r in results:
            live.summary[f"fold{r.fold}"] = {
                **live.summary.get(f"fold{r.fold}", {}),
                "best_val_dice": r.best_dice,
                "best_epoch": r.best_epoch,
            }
            val = table.loc[table["fold"] == r.fold, "img"].tolist()[:3]
            rules = [Rule(0.5)] * comp.channels
            for name, picture in evaluate.pictures(MODELS / f"fold{r.fold}" / "best.pt", comp, val, rules, rt):
                live.log_image(f"fold{r.fold}/{name.rsplit('.', 1)[0]}.jpg", picture)
        live.summary["best_val_dice"] = sum(r.best_dice for r in results) / len(results)
        live.make_summary()
        live.end()


if __name__ == "__main__":
    run_stage(main)
