"""The submission file: written from shards, checked, and never left half-written."""

from __future__ import annotations

import os

import pytest

from pipeline.submission import encode
from tests.conftest import write_shards


def test_a_full_disk_is_one_line_and_the_previous_submission_stays(tmp_path):
    _, written = write_shards(tmp_path / "pred", images=5)
    names = [n for n, _, _ in written]
    out = tmp_path / "sub.csv.gz"
    encode.write(tmp_path / "pred", names, out, 0.5, jobs=1)
    before = out.read_bytes()
    os.symlink("/dev/full", out.with_name(out.name + ".part"))  # every write there fails with ENOSPC
    with pytest.raises(encode.SubmissionError) as err:
        encode.write(tmp_path / "pred", names, out, 0.6, jobs=1)
    assert "disk full while writing" in str(err.value) and "free some space" in str(err.value)
    assert out.read_bytes() == before and not out.with_name(out.name + ".part").exists()
