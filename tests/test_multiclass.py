"""The multi-class path under `dvc repro`: the multi-class demo (background, body, windows, wheels,
lights) trained, evaluated per class, predicted, encoded, and exported as index and colour masks."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from pipeline import rle
from pipeline.download import demo
from pipeline.submission import encode
from tests.conftest import make_project, run, tiny_pipeline
from tests.test_cli import carvana


def test_multiclass_demo_end_to_end(tmp_path):
    project = make_project(tmp_path / "p", lambda d: (tiny_pipeline(d), d["download"]["demo"].update(multiclass=True)))
    run(["dvc", "repro"], project)
    metrics = json.loads((project / "reports/evaluate/metrics.json").read_text())
    assert set(metrics["classes"]) == set(demo.CLASSES)
    assert all(0.0 <= c["dice"] <= 1.0 and 0.0 <= c["iou"] <= 1.0 for c in metrics["classes"].values())
    assert 0.0 <= metrics["mean_iou"] <= 1.0
    manifest = json.loads((project / "data/predictions/manifest.json").read_text())
    assert manifest["classes"] == 5 and manifest["class_names"] == list(demo.CLASSES)
    rows = encode.read(project / "submissions/submission.csv.gz")
    assert len(rows) == 16 and all(rle.parse(code, (96, 160)) is not None for code in rows.values())

    carvana("masks", "-p", project / "data/predictions", "-o", tmp_path / "masks")
    name = next(iter(rows)).rsplit(".", 1)[0]
    index = np.asarray(Image.open(tmp_path / "masks" / f"{name}.png"))
    colours = Image.open(tmp_path / "masks" / f"{name}_colors.png")
    assert index.shape == (96, 160) and index.max() < 5 and colours.mode == "RGB" and colours.size == (160, 96)
