"""Sharing through DVC: queued experiments keep their results and never download the competition again; a
remote gives a fresh clone the models, never the data."""

from __future__ import annotations

import hashlib
import json
import time

import pytest

from tests.conftest import experiment_dice, make_project, run, stages_run, tiny_pipeline
from tests.kaggle_standin import StandIn, kaggle_files

pytestmark = pytest.mark.slow  # runs dvc in a subprocess


def _queue(project, env, *experiments):
    for name, change in experiments:
        run(["dvc", "exp", "run", "--queue", "-n", name, "-S", change, "evaluate"], project, env)
    run(["dvc", "queue", "start", "-j", "1"], project, env)
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        status = run(["dvc", "queue", "status"], project, env).stdout
        if "Queued" not in status and "Running" not in status:
            break
        time.sleep(1)
    run(["dvc", "queue", "stop", "--kill"], project, env, check=False)
    return status


def test_queued_experiments_reuse_the_download_and_a_remote_round_trip(tmp_path, tiny_demo):
    server = StandIn({"carvana-image-masking-challenge": kaggle_files(tiny_demo)}).start()
    env = {
        "KAGGLE_API_ENVIRONMENT": "LOCALHOST",
        "HTTP_PROXY": server.proxy,
        "NO_PROXY": "",
        "KAGGLE_USERNAME": "tester",
        "KAGGLE_KEY": "secret-key",
        "COMPETITIONS_STORE": "",  # the default: the store of the main project, which queued runs find by DVC_ROOT
    }

    def kaggle(d):
        tiny_pipeline(d)
        d["download"].update(source="kaggle", competition="carvana-image-masking-challenge")

    project = make_project(tmp_path / "a", kaggle)
    try:
        run(["dvc", "repro"], project, env)
        downloaded = len(server.log)
        stored = project / ".competitions/carvana-image-masking-challenge/test.zip"
        assert stored.stat().st_ino == (project / "data/raw/test.zip").stat().st_ino  # one copy on disk
        status = _queue(project, env, ("lr-0.004", "train.lr=0.004"))
        assert status.count("Success") == 1, status
        log = run(["dvc", "queue", "logs", "lr-0.004"], project, env).stdout
        # not one request from the queued workspace (listing included), and the data linked, not copied
        assert len(server.log) == downloaded
        assert "files of carvana-image-masking-challenge are there, checked: nothing to download" in log
        assert "copying" not in log
        dice = experiment_dice(json.loads(run(["dvc", "exp", "show", "--json"], project).stdout))
        assert set(dice) == {"lr-0.004"} and 0 < dice["lr-0.004"] <= 1

        remote = tmp_path / "remote"
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
        pushed = {p.parent.name + p.name for p in remote.rglob("*") if p.is_file()}  # md5 of every pushed object
        assert pushed and hashlib.md5((project / "data/raw/train.zip").read_bytes()).hexdigest() not in pushed
        out = run(["dvc", "repro"], clone, env).stdout
        assert stages_run(out) == ["inputs", "download"], out  # the clone downloads the data, then nothing reruns
    finally:
        server.stop()

    with open(clone / "pipeline" / "models" / "losses.py", "a") as f:  # a module only training imports
        f.write("\n# an edit\n")
    status = run(["dvc", "status"], clone).stdout
    changed = {line.strip().rstrip(":") for line in status.splitlines() if line and not line.startswith("\t")}
    assert "train" in changed and not {"download", "split", "encode", "submit"} & changed, status
