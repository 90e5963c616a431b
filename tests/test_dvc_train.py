"""Train and evaluate under real DVC: metrics, plots, experiments, k-fold out-of-fold Dice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pandas as pd
import pytest
import torch

from tests.conftest import experiment_dice, make_project, run, tiny_pipeline


def _tiny(data):
    tiny_pipeline(data, epochs=2, worst=2)


def test_evaluate_metrics_plots_and_experiments(tmp_path):
    project = make_project(tmp_path / "p", _tiny)
    run(["dvc", "repro", "evaluate"], project)
    metrics = json.loads((project / "reports/evaluate/metrics.json").read_text())
    assert metrics["images"] == 32 and 0.2 <= metrics["threshold"] <= 0.8 and 0.0 < metrics["dice"] <= 1.0
    sweep = pd.read_csv(project / "reports/evaluate/threshold_sweep.csv")
    assert abs(sweep["dice"].max() - metrics["dice"]) < 1e-9
    assert len(list((project / "reports/evaluate/worst").glob("*.jpg"))) == 2
    assert "Running stage" not in run(["dvc", "repro", "evaluate"], project).stdout

    plots = json.loads(run(["dvc", "plots", "show", "--json"], project).stdout)["data"]
    assert "dvclive/train/plots/metrics/fold0/val_dice.tsv" in plots
    assert "reports/evaluate/threshold_sweep.csv" in plots
    assert any(k.startswith("dvclive/train/plots/images/fold0/") for k in plots)

    for name, lr in (("slow", "3e-4"), ("fast", "0.01")):
        run(["dvc", "exp", "run", "-n", name, "-S", f"train.lr={lr}", "evaluate"], project)
    shown = json.loads(run(["dvc", "exp", "show", "--json"], project).stdout)
    text = json.dumps(shown)
    assert "best_val_dice" in text and '"lr": 0.0003' in text
    dice = experiment_dice(shown)  # each experiment keeps its own metrics, not only the workspace
    assert set(dice) == {"slow", "fast"} and dice["slow"] != dice["fast"] and all(0 < d <= 1 for d in dice.values())
    diff = json.loads(run(["dvc", "plots", "diff", "slow", "fast", "--json"], project).stdout)
    assert "reports/evaluate/threshold_sweep.csv" in json.dumps(diff)


def test_every_fold_trains_and_evaluate_reports_out_of_fold_dice(tmp_path):
    project = make_project(tmp_path / "p", _tiny)
    run(["dvc", "exp", "run", "-S", "split.fold=all", "-S", "train.epochs=1", "evaluate"], project)
    assert sorted(p.name for p in (project / "models").iterdir()) == ["fold0", "fold1"]
    metrics = json.loads((project / "reports/evaluate/metrics.json").read_text())
    per_image = pd.read_csv(project / "reports/evaluate/per_image.csv")
    assert metrics["images"] == 64 and metrics["folds"] == [0, 1] and sorted(per_image["fold"].unique()) == [0, 1]
    live = json.loads((project / "dvclive/train/metrics.json").read_text())
    assert {"fold0", "fold1", "best_val_dice"} <= set(live)


def _wait_for_epoch(path, epoch: int, proc, timeout: float = 300) -> None:
    from pipeline import checkpoint

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the run ended before it could be interrupted"
        try:
            if path.is_file() and checkpoint.load(path)["epoch"] >= epoch:
                return
        except Exception:  # caught mid-write by the poll: try again
            pass
        time.sleep(0.05)
    raise AssertionError(f"{path} never reached epoch {epoch}")


@pytest.mark.slow
def test_a_killed_exp_run_resumes_training_to_the_same_weights(tmp_path):
    from pipeline import checkpoint

    edit = lambda d: (tiny_pipeline(d, epochs=4), d["predict"].update(shard_size=4))  # noqa: E731
    whole = make_project(tmp_path / "whole", edit)
    run(["dvc", "exp", "run", "encode"], whole)
    cut = make_project(tmp_path / "cut", edit)
    env = {**os.environ, "PYTHONPATH": str(cut)}
    proc = subprocess.Popen(
        ["dvc", "exp", "run", "encode"], cwd=cut, env=env, start_new_session=True, stdout=subprocess.DEVNULL
    )
    try:
        _wait_for_epoch(cut / "checkpoints/train/fold0/last.pt", 1, proc)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert checkpoint.load(cut / "checkpoints/train/fold0/last.pt")["epoch"] < 4
    out = run(["dvc", "exp", "run", "encode"], cut).stdout
    assert "fold 0: resuming from checkpoints/train/fold0/last.pt after epoch" in out
    a, b = (checkpoint.load(p / "models/fold0/best.pt")["state_dict"] for p in (whole, cut))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    submission = "submissions/submission.csv.gz"
    assert (cut / submission).read_bytes() == (whole / submission).read_bytes()
