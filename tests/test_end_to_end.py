"""The README's demo command on a fresh clone, default params: the whole pipeline, scored."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from pipeline import rle
from pipeline.evaluation import metrics
from pipeline.submission import encode
from tests.conftest import make_project, run


@pytest.mark.slow
def test_dvc_repro_on_the_demo_makes_a_submission_that_scores(tmp_path):
    project = make_project(tmp_path / "clone")
    run(["dvc", "repro"], project)
    evaluation = json.loads((project / "reports/evaluate/metrics.json").read_text())
    assert evaluation["dice"] >= 0.98, evaluation
    sub = encode.read(project / "submissions/submission.csv.gz")
    sample = pd.read_csv(project / "data/raw/sample_submission.csv", dtype=str)
    assert list(sub) == list(sample["img"])
    truth = dict(pd.read_csv(project / "data/demo-truth/test_masks.csv", dtype=str, keep_default_na=False).values)
    for code in sub.values():
        rle.validate(code)
    dice = metrics.submission_dice(sub, truth, rle.CARVANA_SHAPE)
    assert dice >= 0.97, dice
    assert json.loads((project / "submissions/receipt.json").read_text())["submitted"] is False
    assert "Running stage" not in run(["dvc", "repro"], project).stdout
