"""Predict and encode under real DVC: persisted shards, thresholds that do not redo the model work."""

from __future__ import annotations

import gzip

from tests.conftest import make_project, run
from tests.test_submit import _tiny


def test_a_forced_rerun_keeps_shards_and_a_new_threshold_reuses_them(tmp_path):
    project = make_project(tmp_path / "p", lambda d: (_tiny(d), d["predict"].update(shard_size=5)))
    run(["dvc", "repro", "encode"], project)
    shards = sorted((project / "data/predictions").glob("shard-*.zip"))
    assert len(shards) == 4  # 16 test images, 5 per shard
    stamps = {p.name: p.stat().st_mtime_ns for p in shards}
    out = run(["dvc", "repro", "-f", "-s", "predict"], project).stdout
    assert "(0 written now" in out
    assert {p.name: p.stat().st_mtime_ns for p in shards} == stamps
    before = gzip.open(project / "submissions/submission.csv.gz").read()
    out = run(["dvc", "exp", "run", "-S", "encode.threshold=0.2", "encode"], project).stdout
    assert "Running stage 'predict'" not in out and "Running stage 'encode'" in out
    assert gzip.open(project / "submissions/submission.csv.gz").read() != before
