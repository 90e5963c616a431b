"""The multi-class path under `dvc repro`: the multi-class demo (background, body, windows, wheels,
lights) trained, evaluated per class, predicted, encoded, and exported as index and colour masks."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from pipeline.competitions.carvana import DEMO_PARTS
from pipeline.masks import rle
from pipeline.submission import encode
from tests.conftest import carvana, make_project, run, tiny_pipeline

pytestmark = pytest.mark.slow  # runs dvc in a subprocess


def test_multiclass_demo_end_to_end(tmp_path):
    project = make_project(tmp_path / "p", lambda d: (tiny_pipeline(d), d["download"]["demo"].update(multiclass=True)))
    run(["dvc", "repro"], project)
    metrics = json.loads((project / "reports/evaluate/metrics.json").read_text())
    assert set(metrics["classes"]) == set(DEMO_PARTS)
    classes = list(metrics["classes"].values())
    assert metrics["mean_iou"] == pytest.approx(np.mean([c["iou"] for c in classes]))
    assert metrics["mean_class_dice"] == pytest.approx(np.mean([c["dice"] for c in classes[1:]]))  # background aside
    manifest = json.loads((project / "data/predictions/manifest.json").read_text())
    assert manifest["classes"] == 5 and manifest["class_names"] == list(DEMO_PARTS)
    rows = encode.read(project / "submissions/submission.csv.gz")
    areas = [rle.decode(code, (96, 160)).sum() for code in rows.values()]  # raises on a malformed RLE
    assert len(rows) == 16 and sum(areas) > 0

    carvana("masks", "-p", project / "data/predictions", "-o", tmp_path / "masks")
    name = next(iter(rows)).rsplit(".", 1)[0]
    index = np.asarray(Image.open(tmp_path / "masks" / f"{name}.png"))
    colours = Image.open(tmp_path / "masks" / f"{name}_colors.png")
    assert index.shape == (96, 160) and index.max() < 5 and colours.mode == "RGB" and colours.size == (160, 96)
    (tmp_path / "file").write_text("")
    proc = carvana("masks", "-p", project / "data/predictions", "-o", tmp_path / "file" / "masks", check=False)
    assert proc.returncode == 1 and "cannot make the folder" in proc.stderr and "Traceback" not in proc.stderr
