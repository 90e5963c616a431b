"""Each checkout runs its own code: dvc.yaml runs `python -m stages.<name>` from the project root, and a stage script
that would import another checkout's `pipeline` stops in one line."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT, make_project, run, stages_run, tiny_pipeline


def test_a_stage_run_by_path_from_another_checkout_stops_in_one_line(tmp_path):
    other = tmp_path / "other"
    shutil.copytree(ROOT / "stages", other / "stages")  # `python stages/x.py` puts stages/ first on sys.path
    proc = subprocess.run(
        [sys.executable, "stages/inputs.py"], cwd=other, capture_output=True, text=True, env={"PATH": "/usr/bin"}
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.count("\n") == 1 and f"belongs to {other.resolve()}" in proc.stderr
    assert "python -m stages.inputs" in proc.stderr


@pytest.mark.slow
def test_a_second_clone_sharing_the_environment_runs_its_own_code_under_dvc(tmp_path):
    clone = make_project(tmp_path / "second", tiny_pipeline)
    with open(clone / "pipeline/data/split.py", "a") as f:
        f.write('\nprint("split code of the second clone")\n')
    out = run(["dvc", "repro", "split"], clone).stdout  # no PYTHONPATH: the environment's install is ROOT's
    assert stages_run(out) == ["inputs", "download", "plan", "split"]
    assert "split code of the second clone" in out


@pytest.mark.slow
def test_an_unknown_slug_with_the_demo_source_stops_naming_the_known_competitions(tmp_path):
    project = make_project(tmp_path / "p")
    proc = run(["dvc", "exp", "run", "-S", "download.competition=severstal"], project, check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    line = next(x for x in proc.stderr.splitlines() if x.startswith("error:"))
    assert "'severstal' is not a competition this package knows" in line
    assert "carvana-image-masking-challenge, severstal-steel-defect-detection" in line
    assert "did you mean severstal-steel-defect-detection?" in line
    assert stages_run(proc.stdout) == ["inputs"]  # stopped first, before any download
