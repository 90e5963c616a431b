"""Real data: the ISBI 2012 membrane slices (../shared/data/isbi2012-membrane) through DVC.

The labels mark cell interior (255) against membrane (0); interior covers about 78 % of a slice, so
predicting "all interior" already scores a Dice near 0.88. A short training must beat that baseline
on the held-out slices by a clear margin, at full resolution.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

from tests.conftest import ISBI, make_project, run

pytestmark = pytest.mark.slow  # runs dvc in a subprocess


def _isbi(data):
    data["download"].update(source="local", competition="isbi2012-membrane")
    data["download"]["local"].update(
        path=str(ISBI),
        layout="folder-pairs",
        images="train/image",
        masks="train/label",
        test_images="test/image",
        mask_suffix="",
        mask_values="binary",
    )
    data["split"].update(group="image", folds=5, fold=0)
    data["train"]["model"].update(base_channels=8)
    data["train"].update(scale=0.25, epochs=12, batch_size=4, lr=0.005, workers=0, warmup_epochs=0.5)
    data["train"]["augment"].update(hue=0.0, saturation=0.0)
    data["predict"].update(workers=0)
    data["evaluate"].update(worst=1)


@pytest.mark.skipif(not ISBI.is_dir(), reason="the shared ISBI slices are not beside this checkout")
def test_isbi_membrane_segmentation_beats_the_all_interior_baseline(tmp_path):
    project = make_project(tmp_path / "p", _isbi)
    run(["dvc", "repro", "evaluate"], project)
    metrics = json.loads((project / "reports/evaluate/metrics.json").read_text())
    per_image = pd.read_csv(project / "reports/evaluate/per_image.csv")
    baseline = (2 * per_image["mask_area"] / (1 + per_image["mask_area"])).mean()  # Dice of "all interior"
    assert metrics["images"] == 6
    assert metrics["dice"] > baseline + 0.02, (metrics["dice"], baseline)
