"""The README's demo command on a fresh clone, default params: the whole pipeline, scored."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from pipeline.competitions.carvana import Carvana
from pipeline.submission import encode
from tests.conftest import make_project, run, stages_run


@pytest.mark.slow
def test_dvc_repro_on_the_demo_makes_a_submission_that_scores(tmp_path):
    project = make_project(tmp_path / "clone")
    run(["dvc", "repro"], project)
    evaluation = json.loads((project / "reports/evaluate/metrics.json").read_text())
    assert evaluation["dice"] >= 0.98, evaluation
    sub = encode.read(project / "submissions/submission.csv.gz")
    sample = pd.read_csv(project / "data/raw/sample_submission.csv", dtype=str)
    assert list(sub) == list(sample["img"])
    for code in sub.values():
        Carvana.dialect.pairs(code, Carvana.native_size)  # raises on a malformed RLE
    dice = Carvana.score(project / "submissions/submission.csv.gz", project / "data/demo-truth/test_masks.csv",
                         Carvana.native_size)  # fmt: skip
    assert dice >= 0.97, dice
    assert json.loads((project / "submissions/receipt.json").read_text())["submitted"] is False
    assert stages_run(run(["dvc", "repro"], project).stdout) == ["inputs"]  # no work the second time
