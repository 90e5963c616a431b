"""Predict and encode under real DVC: kept shards, thresholds that do not redo the model work."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest

from pipeline.prediction import shards
from tests.conftest import copy_project, run

pytestmark = pytest.mark.slow  # runs dvc in a subprocess


def _maps(folder):
    return {name: probs for shard in sorted(folder.glob("shard-*.zip")) for name, _, probs in shards.read_shard(shard)}


def test_shards_shared_by_two_processes_kept_on_a_forced_rerun_reused_by_a_new_threshold_and_onnx(
    tiny_project, tmp_path
):
    project = copy_project(tiny_project, tmp_path / "p")
    torch_maps = _maps(project / "data/predictions")
    out = run(["dvc", "exp", "run", "-S", "predict.nproc=2", "-S", "predict.shard_size=4", "encode"], project).stdout
    assert "Running stage 'train'" not in out and "Running stage 'predict'" in out
    assert len(list((project / "data/predictions").glob("shard-*.zip"))) == 4  # 16 test images, 4 per shard
    assert all(np.array_equal(torch_maps[k], v) for k, v in _maps(project / "data/predictions").items())

    files = sorted((project / "checkpoints/predict").glob("shard-*.zip"))  # where the stage makes them
    stamps = {p.name: p.stat().st_mtime_ns for p in files}
    out = run(["dvc", "repro", "-f", "-s", "predict"], project).stdout
    assert "(0 written now" in out
    assert {p.name: p.stat().st_mtime_ns for p in files} == stamps
    before = gzip.open(project / "submissions/submission.csv.gz").read()
    out = run(["dvc", "exp", "run", "-S", "encode.threshold=0.2", "encode"], project).stdout
    assert "Running stage 'predict'" not in out and "Running stage 'encode'" in out
    assert gzip.open(project / "submissions/submission.csv.gz").read() != before

    out = run(["dvc", "exp", "run", "-S", "predict.backend=onnxruntime", "encode"], project).stdout
    assert (project / "checkpoints/predict/onnx/fold0.onnx").is_file()
    assert "Running stage 'evaluate'" in out  # ONNX Runtime computes float32: the threshold is chosen on float32 too
    assert json.loads((project / "reports/evaluate/predictor.json").read_text())["amp"] is False
    onnx_maps = _maps(project / "data/predictions")
    assert onnx_maps.keys() == torch_maps.keys()
    assert all(np.abs(onnx_maps[k].astype(int) - torch_maps[k].astype(int)).max() <= 1 for k in torch_maps)
