"""Where the pipeline keeps its files, relative to the project root: one home for every path that the stages, the
CLI, the benches and the library share (dvc.yaml names the same paths for DVC).

DVC's outs live in data/, models/, reports/ and submissions/; checkpoints/ holds the resumable work that DVC never
restores or deletes (last.pt, unfinished shards, fetched members, the wheel cache).
"""

from __future__ import annotations

import os
from pathlib import Path

RAW = Path("data/raw")  # the competition's files (download)
DEMO_TRUTH = Path("data/demo-truth")  # the demo's test labels: no stage reads them
INPUTS = Path("data/inputs")  # the content of the files params name (inputs)
PLAN = Path("data/plan")  # the planned value of every `auto` param, one file per stage that reads them
PLAN_REPORTS = Path("reports/plan")  # plan.json (each value, its reason, who chose it) and fingerprint.json
SPLIT = Path("data/split.csv")
MODELS = Path("models")
OOF = Path("data/oof")  # the maps evaluate scored: out of fold with split.fold all
PREDICTIONS = Path("data/predictions")
EVALUATION = Path("reports/evaluate")
METRICS = EVALUATION / "metrics.json"
RECIPE = EVALUATION / "predictor.json"  # the rules, TTA and precision chosen for the checkpoints
BLEND = EVALUATION / "blend.json"
LIVE = Path("dvclive/train")
PACKAGE = Path("data/package")  # a code competition's kernel bundle: dataset/ and kernel/
SUBMISSIONS = Path("submissions")
SUBMISSION = SUBMISSIONS / "submission.csv.gz"
RECEIPT = SUBMISSIONS / "receipt.json"
HISTORY = SUBMISSIONS / "history.jsonl"  # every upload, never deleted: nothing is submitted twice
SCORES = SUBMISSIONS / "scores.json"
CHECKPOINTS = Path("checkpoints")


def model(fold: int | str, models: Path = MODELS) -> Path:
    """A fold's trained model, in `models` (this project's, or a fetched experiment's); fold "*" is a glob."""
    return models / f"fold{fold}" / "best.pt"


WEIGHT_FILES = (".pth", ".pt", ".safetensors")  # what makes train.model.encoder_weights a local file


def is_weights_file(weights: str) -> bool:
    """encoder_weights names a local file (rather than imagenet, another published set, or none)."""
    return Path(weights).suffix in WEIGHT_FILES


def from_project(path: str) -> Path:
    """A path written in params.yaml, as it reads in the workspace: a relative one is relative to the main project,
    also in the copy a queued or `--temp` experiment runs in (DVC names the main project in DVC_ROOT)."""
    found = Path(path).expanduser()
    return found if found.is_absolute() else Path(os.environ.get("DVC_ROOT") or ".").resolve() / found
