"""Train one U-Net per validation fold: `dvc repro train` -> models/fold<k>/best.pt.

Training state (last.pt after every epoch, best.pt) lives in checkpoints/train/fold<k>/, which DVC
never restores or deletes: a killed `dvc repro` or `dvc exp run` resumes from the last finished epoch.

split.fold picks the held-out fold (`all`: one model per fold). With train.nproc > 1 the stage
relaunches itself under torchrun (DDP: one process per GPU, or gloo processes on a CPU).
"""

import json
import shutil
from pathlib import Path

import pandas as pd

from pipeline import budget, members, params, paths, provenance, runtime, training
from pipeline.competitions import open_competition
from pipeline.errors import run_stage
from pipeline.evaluation import pictures
from pipeline.masks.postprocess import Rule
from pipeline.paths import CHECKPOINTS, INPUTS, LIVE, MODELS, PLAN, RAW, SPLIT
from pipeline.planning import resolve
from pipeline.prediction.pseudo import PseudoLabels

STATE = CHECKPOINTS / "train"  # last.pt and best.pt while training: DVC never restores or deletes it
RESOLVED, FETCHED = INPUTS / "train.json", CHECKPOINTS / "pseudo"


def pseudo_labels(t, comp, slug: str, rt) -> tuple[PseudoLabels | None, dict | None]:
    """The pseudo-labelled test images of train.pseudo_labels (none when its source is empty), and their source."""
    if not t.pseudo_labels.source:
        return None, None
    source = json.loads(RESOLVED.read_text())["pseudo_labels"]
    if rt.main:
        members.fetch(source, FETCHED)
    runtime.barrier(rt.world)
    shown = f"{source['name']} ({source['rev'][:7]})"
    labels = PseudoLabels.choose(comp, slug, FETCHED / source["rev"], t.pseudo_labels.fraction, shown)
    if rt.main:
        print(
            f"pseudo-labels: {len(labels.names)} test images of {shown}, the most "
            f"confident {t.pseudo_labels.fraction:.0%}, join the training images"
        )
    return labels, source


def agreement(p: dict) -> dict:
    """What this node trains, for the nodes of a multi-node run to compare before they start (runtime.meet)."""
    comp = open_competition(RAW, p["download"].competition, p["download"].hq)
    return training.agreement(p, comp, pd.read_csv(SPLIT), provenance.code_version(Path(__file__)))


def main() -> None:
    given = params.load("download", "split", "train")
    p = resolve.resolved(given, PLAN, "train")  # every auto as the plan chose it
    t, folds = p["train"], p["split"].validation_folds()
    status = runtime.relaunch(
        __spec__.name, t.nproc, t.nnodes, t.rdzv_endpoint, t.rdzv_timeout, lambda: agreement(p)
    )  # fmt: skip
    if status is not None:
        raise SystemExit(status)
    rt = training.setup(t)
    comp = open_competition(RAW, p["download"].competition, p["download"].hq)
    table = pd.read_csv(SPLIT)
    if rt.main:
        data = budget.competition_data(comp)
        sizes = [
            (int((table["fold"] != k).sum()), int((table["fold"] == k).sum())) for k in folds
        ]  # as split made them
        print(budget.report([budget.train_cost(p, data, rt, sizes)], data, rt))
    from dvclive import Live

    live = Live(str(LIVE), dvcyaml=None, save_dvc_exp=False, report=None) if rt.main else None
    pseudo, source = pseudo_labels(t, comp, p["download"].competition, rt)
    results = [training.train_fold(t, rt, comp, table, k, STATE / f"fold{k}", live, pseudo=pseudo) for k in folds]
    if live is not None:
        params.check_unchanged(given)
        MODELS.mkdir(exist_ok=True)
        if pseudo is not None:  # what this round trained on, beside its models
            (MODELS / "pseudo_labels.json").write_text(json.dumps(pseudo.record(source), indent=1) + "\n")
        for k in folds:  # the out: each fold's best model, once its training is complete
            paths.model(k).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(STATE / f"fold{k}" / "best.pt", paths.model(k))
        for r in results:
            live.summary[f"fold{r.fold}"] = {
                **live.summary.get(f"fold{r.fold}", {}),
                "best_val_dice": r.best_dice,
                "best_epoch": r.best_epoch,
            }
            val = table.loc[table["fold"] == r.fold, "img"].tolist()[:3]
            rules = [Rule(0.5)] * comp.channels
            for name, picture in pictures.pictures(paths.model(r.fold), comp, val, rules, rt):
                live.log_image(f"fold{r.fold}/{name.rsplit('.', 1)[0]}.jpg", picture)
        live.summary["best_val_dice"] = sum(r.best_dice for r in results) / len(results)
        live.make_summary()
        live.end()


if __name__ == "__main__":
    run_stage(main)
