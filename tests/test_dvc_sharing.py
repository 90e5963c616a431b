"""Sharing through DVC: queued experiments keep their results; a remote gives a fresh clone the models."""

from __future__ import annotations

import json
import time

import pytest

from tests.conftest import copy_project, experiment_dice, run, stages_run

pytestmark = pytest.mark.slow  # runs dvc in a subprocess


def test_queued_experiments_and_a_remote_round_trip(tiny_project, tmp_path):
    project = copy_project(tiny_project, tmp_path / "a")
    for lr in ("0.001", "0.002", "0.004"):
        run(["dvc", "exp", "run", "--queue", "-n", f"lr-{lr}", "-S", f"train.lr={lr}", "evaluate"], project)
    run(["dvc", "queue", "start", "-j", "1"], project)
    deadline = time.monotonic() + 1800
    while time.monotonic() < deadline:
        status = run(["dvc", "queue", "status"], project).stdout
        if "Queued" not in status and "Running" not in status:
            break
        time.sleep(2)
    run(["dvc", "queue", "stop", "--kill"], project, check=False)
    assert status.count("Success") == 3, status
    dice = experiment_dice(json.loads(run(["dvc", "exp", "show", "--json"], project).stdout))
    assert set(dice) == {"lr-0.001", "lr-0.002", "lr-0.004"} and all(0 < d <= 1 for d in dice.values())

    remote = tmp_path / "remote"
    run(["dvc", "repro"], project)
    run(["dvc", "remote", "add", "-d", "shared", str(remote)], project)
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-qm", "results"], project)
    run(["dvc", "push"], project)
    clone = tmp_path / "b"
    run(["git", "clone", "-q", str(project), str(clone)], tmp_path)
    run(["git", "config", "user.email", "t@example.com"], clone)
    run(["git", "config", "user.name", "test"], clone)
    run(["dvc", "pull", "--allow-missing"], clone)
    assert (clone / "models/fold0/best.pt").is_file() and (clone / "reports/evaluate/metrics.json").is_file()
    out = run(["dvc", "repro"], clone).stdout
    assert "Running stage 'download'" in out  # Kaggle's rules keep the data out of remotes
    assert stages_run(out) == ["inputs", "download"], out

    with open(clone / "pipeline" / "models" / "losses.py", "a") as f:  # a module only training imports
        f.write("\n# an edit\n")
    status = run(["dvc", "status"], clone).stdout
    changed = {line.strip().rstrip(":") for line in status.splitlines() if line and not line.startswith("\t")}
    assert "train" in changed and not {"download", "split", "encode", "submit"} & changed, status
