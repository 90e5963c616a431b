"""Predict and encode under real DVC: kept shards, thresholds that do not redo the model work."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from pipeline.prediction import shards
from tests.conftest import copy_project, run

pytestmark = pytest.mark.slow  # runs dvc in a subprocess


def test_a_forced_rerun_keeps_shards_and_a_new_threshold_reuses_them(tiny_project, tmp_path):
    project = copy_project(tiny_project, tmp_path / "p")
    out = run(["dvc", "exp", "run", "-S", "predict.shard_size=5", "encode"], project).stdout
    assert "Running stage 'train'" not in out and "Running stage 'predict'" in out
    assert len(list((project / "data/predictions").glob("shard-*.zip"))) == 4  # 16 test images, 5 per shard
    files = sorted((project / "checkpoints/predict").glob("shard-*.zip"))  # where the stage makes them
    stamps = {p.name: p.stat().st_mtime_ns for p in files}
    out = run(["dvc", "repro", "-f", "-s", "predict"], project).stdout
    assert "(0 written now" in out
    assert {p.name: p.stat().st_mtime_ns for p in files} == stamps
    before = gzip.open(project / "submissions/submission.csv.gz").read()
    out = run(["dvc", "exp", "run", "-S", "encode.threshold=0.2", "encode"], project).stdout
    assert "Running stage 'predict'" not in out and "Running stage 'encode'" in out
    assert gzip.open(project / "submissions/submission.csv.gz").read() != before


def _maps(folder):
    return {name: probs for shard in sorted(folder.glob("shard-*.zip")) for name, _, probs in shards.read_shard(shard)}


def test_two_processes_share_the_shards_and_onnx_runtime_is_a_backend(tiny_project, tmp_path):
    project = copy_project(tiny_project, tmp_path / "p")
    torch_maps = _maps(project / "data/predictions")
    run(["dvc", "exp", "run", "-S", "predict.nproc=2", "-S", "predict.shard_size=4", "predict"], project)
    assert len(list((project / "data/predictions").glob("shard-*.zip"))) == 4
    assert all(np.array_equal(torch_maps[k], v) for k, v in _maps(project / "data/predictions").items())
    run(["dvc", "exp", "run", "-S", "predict.backend=onnxruntime", "encode"], project)
    assert (project / "checkpoints/predict/onnx/fold0.onnx").is_file()
    onnx_maps = _maps(project / "data/predictions")
    assert onnx_maps.keys() == torch_maps.keys()
    assert all(np.abs(onnx_maps[k].astype(int) - torch_maps[k].astype(int)).max() <= 1 for k in torch_maps)
