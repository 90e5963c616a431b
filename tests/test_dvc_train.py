"""Train and evaluate under real DVC: metrics, plots, experiments, k-fold out-of-fold Dice."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time

import pandas as pd
import pytest
import torch

from tests.conftest import copy_project, edit_yaml, experiment_dice, run, stages_run

pytestmark = pytest.mark.slow  # runs dvc in a subprocess


def test_evaluate_metrics_plots_and_experiments(tiny_project, tmp_path):
    project = copy_project(tiny_project, tmp_path / "p")
    metrics = json.loads((project / "reports/evaluate/metrics.json").read_text())
    assert metrics["images"] == 32 and 0.2 <= metrics["threshold"] <= 0.8 and 0.0 < metrics["dice"] <= 1.0
    sweep = pd.read_csv(project / "reports/evaluate/threshold_sweep.csv")
    assert abs(sweep["dice"].max() - metrics["dice"]) < 1e-9
    assert len(list((project / "reports/evaluate/worst").glob("*.jpg"))) == 1  # tiny_pipeline: evaluate.worst 1
    assert stages_run(run(["dvc", "repro", "evaluate"], project).stdout) == ["inputs"]

    plots = json.loads(run(["dvc", "plots", "show", "--json"], project).stdout)["data"]
    assert "dvclive/train/plots/metrics/fold0/val_dice.tsv" in plots
    assert "reports/evaluate/threshold_sweep.csv" in plots
    assert any(k.startswith("dvclive/train/plots/images/fold0/") for k in plots)

    folds = ["-S", "split.fold=all", "-S", "train.lr=3e-4"]  # a model per fold, at another lr
    run(["dvc", "exp", "run", "-n", "folds", *folds, "evaluate"], project)
    assert sorted(p.name for p in (project / "models").iterdir()) == ["fold0", "fold1"]
    metrics = json.loads((project / "reports/evaluate/metrics.json").read_text())
    per_image = pd.read_csv(project / "reports/evaluate/per_image.csv")  # out-of-fold: every image, by its fold
    assert metrics["images"] == 64 and metrics["folds"] == [0, 1] and sorted(per_image["fold"].unique()) == [0, 1]
    live = json.loads((project / "dvclive/train/metrics.json").read_text())
    assert {"fold0", "fold1", "best_val_dice"} <= set(live)

    # a blend of two architectures' out-of-fold maps: nothing retrained, never below the better member
    nested = ["-S", "split.fold=all", "-S", "train.model.arch=unetplusplus"]
    run(["dvc", "exp", "run", "-n", "nested", *nested, "evaluate"], project)
    shown = json.loads(run(["dvc", "exp", "show", "--json"], project).stdout)
    text = json.dumps(shown)
    assert "best_val_dice" in text and '"lr": 0.0003' in text
    dice = experiment_dice(shown)  # each experiment keeps its own metrics, not only the workspace
    assert set(dice) == {"folds", "nested"} and dice["folds"] != dice["nested"]
    assert all(0 < d <= 1 for d in dice.values())
    diff = json.loads(run(["dvc", "plots", "diff", "folds", "nested", "--json"], project).stdout)
    assert "reports/evaluate/threshold_sweep.csv" in json.dumps(diff)
    out = run(["dvc", "exp", "run", "-n", "blend", "-S", "blend.members=[folds,nested]"], project).stdout
    assert "train" not in stages_run(out) and "a blend of folds x" in out, out
    blend = json.loads((project / "reports/evaluate/metrics.json").read_text())["blend"]
    assert blend["dice"] >= max(blend["members"].values()) and sum(blend["weights"].values()) == pytest.approx(1)
    dice = experiment_dice(json.loads(run(["dvc", "exp", "show", "--json"], project).stdout))
    assert dice["blend"] == blend["dice"] and dice["nested"] == pytest.approx(blend["members"]["nested"], abs=1e-12)
    assert len(list((project / "checkpoints/predict/members").iterdir())) == sum(
        w > 0 for w in blend["weights"].values()
    )

    # a bad value of a stage that would not run: the experiment fails at once, naming the key
    proc = run(["dvc", "exp", "run", "-n", "bad", "-S", "predict.batch_size=0", "evaluate"], project, check=False)
    assert proc.returncode != 0 and "predict.batch_size must be in 1..4096, got 0" in proc.stderr, proc.stderr
    assert "Running stage 'evaluate'" not in proc.stdout and "bad" not in experiment_dice(
        json.loads(run(["dvc", "exp", "show", "--json"], project).stdout)
    )


def _kill_when(ready, proc, timeout: float = 300) -> None:
    """SIGKILL the run's whole process group as soon as `ready()` holds, as a crash or Ctrl-C would stop it."""
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            assert proc.poll() is None, "the run ended before it could be interrupted"
            assert time.monotonic() < deadline, "the run never reached the point of interruption"
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _last_epoch(path) -> int:
    from pipeline.models import checkpoint

    try:
        return checkpoint.load(path)["epoch"] if path.is_file() else 0
    except Exception:  # caught mid-write by the poll
        return 0


def _locked_train(project):
    from ruamel.yaml import YAML

    return json.dumps(YAML(typ="safe", pure=True).load(project / "dvc.lock")["stages"]["train"], sort_keys=True)


def test_params_edited_while_a_stage_runs_are_never_locked(tiny_project, tmp_path):
    project = copy_project(tiny_project, tmp_path / "p")
    shutil.rmtree(project / "checkpoints")  # the last.pt to wait for is this run's
    edit_yaml(project / "params.yaml", lambda d: d["train"].update(epochs=6))
    locked = _locked_train(project)
    proc = subprocess.Popen(
        ["dvc", "repro", "train"], cwd=project, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 300
    while _last_epoch(project / "checkpoints/train/fold0/last.pt") < 1:  # training, with the old lr
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    edit_yaml(project / "params.yaml", lambda d: d["train"].update(lr=0.002))  # what a refused `dvc exp run -S` does
    out, err = proc.communicate(timeout=300)
    assert proc.returncode != 0, out
    assert "params.yaml changed while this stage ran (train.lr: 'auto' then 0.002)" in err and "Traceback" not in err
    assert _locked_train(project) == locked  # nothing locked: train is still due
    assert "train" in run(["dvc", "status", "train"], project).stdout


def test_fine_tuning_under_ddp_and_replacing_the_file_behind_train_init_from_reruns_training(tiny_project, tmp_path):
    from pipeline.models import checkpoint

    project = copy_project(tiny_project, tmp_path / "p")
    start = project / "start.pt"  # outside DVC: a checkpoint of an earlier experiment, say
    shutil.copyfile(project / "models/fold0/best.pt", start)
    out = run(["dvc", "exp", "run", "-S", "train.init_from=start.pt", "-S", "train.nproc=2", "train"], project).stdout
    assert "train" in stages_run(out) and "initialised from start.pt" in out
    assert out.count("fold 0 epoch 1/1") == 1  # two gloo processes under torchrun; only rank 0 logs
    assert checkpoint.load(project / "models/fold0/best.pt")["epoch"] == 1
    assert (project / "dvclive/train/metrics.json").is_file()
    assert stages_run(run(["dvc", "repro", "train"], project).stdout) == ["inputs"]
    other = checkpoint.load(start)
    other["state_dict"] = {k: v * 0.5 if v.is_floating_point() else v for k, v in other["state_dict"].items()}
    checkpoint.save(start, other)  # the same name, other weights
    out = run(["dvc", "repro", "train"], project).stdout
    assert stages_run(out) == ["inputs", "train"] and "the files read by train changed" in out, out


def test_a_killed_exp_run_resumes_training_and_prediction_to_the_same_results(tiny_project, tmp_path):
    from pipeline.models import checkpoint

    def copy(name):  # the finished tiny project, to train 4 epochs and predict 16 shards: time to interrupt
        project = copy_project(tiny_project, tmp_path / name)
        shutil.rmtree(project / "checkpoints")
        edit_yaml(
            project / "params.yaml",
            lambda d: (d["train"].update(epochs=4), d["predict"].update(shard_size=1, batch_size=1)),
        )
        return project  # fmt: skip

    whole = copy("whole")
    run(["dvc", "exp", "run", "encode"], whole)
    cut = copy("cut")
    command = ["dvc", "exp", "run", "encode"]

    def start():
        return subprocess.Popen(command, cwd=cut, start_new_session=True, stdout=subprocess.DEVNULL)

    last = cut / "checkpoints/train/fold0/last.pt"
    _kill_when(lambda: _last_epoch(last) >= 1, start())
    assert _last_epoch(last) < 4
    shards = cut / "checkpoints/predict"
    _kill_when(lambda: any(shards.glob("shard-*.zip")), start())  # the rerun resumes training, then dies predicting
    finished = len(list(shards.glob("shard-*.zip")))
    assert 1 <= finished < 16
    out = run(command, cut).stdout
    assert "training from scratch" not in out and "the old shards were deleted" not in out
    assert f"({16 - finished} written now" in out, out
    a, b = (checkpoint.load(p / "models/fold0/best.pt")["state_dict"] for p in (whole, cut))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    submission = "submissions/submission.csv.gz"
    assert (cut / submission).read_bytes() == (whole / submission).read_bytes()
