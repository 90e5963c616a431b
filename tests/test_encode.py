"""The submission file: written from shards in the sample's rows, checked by decoding itself, never half-written."""

from __future__ import annotations

import os

import pytest

from pipeline.competitions.carvana import Carvana
from pipeline.masks.postprocess import Rule
from pipeline.masks.rle import DIALECTS
from pipeline.submission import encode
from tests.conftest import write_shards


def _write(pred, names, out, threshold=0.5):
    return encode.write(pred, Carvana, Carvana.format_for(names), [Rule(threshold)], out, jobs=1)


def test_a_full_disk_is_one_line_and_the_previous_submission_stays(tmp_path):
    _, written = write_shards(tmp_path / "pred", images=5)
    names = [n for n, _, _ in written]
    out = tmp_path / "sub.csv.gz"
    _write(tmp_path / "pred", names, out)
    before = out.read_bytes()
    os.symlink("/dev/full", out.with_name(out.name + ".part"))  # every write there fails with ENOSPC
    with pytest.raises(encode.SubmissionError) as err:
        _write(tmp_path / "pred", names, out, 0.6)
    assert "disk full while writing" in str(err.value) and "free some space" in str(err.value)
    assert out.read_bytes() == before and not out.with_name(out.name + ".part").exists()


def test_rows_out_of_the_sample_s_order_are_refused_in_one_line(tmp_path):
    _, written = write_shards(tmp_path / "pred", images=5)
    names = [n for n, _, _ in written]
    with pytest.raises(encode.SubmissionError, match="where the sample submission has .*run `dvc repro predict`"):
        _write(tmp_path / "pred", names[::-1], tmp_path / "sub.csv.gz")
    assert not (tmp_path / "sub.csv.gz").exists()


def test_a_broken_or_misordered_run_length_text_is_named_and_nothing_is_written(tmp_path, monkeypatch):
    _, written = write_shards(tmp_path / "pred", images=5, size=(6, 8), original=(12, 16))
    names = [n for n, _, _ in written]
    real = Carvana.texts
    monkeypatch.setattr(Carvana, "texts", staticmethod(lambda probs, size, rules, classes: {0: "5 3 4 1"}))
    with pytest.raises(encode.SubmissionError, match=r"car_00.jpg, class 1: its run-length text is broken \(RLE runs"):
        _write(tmp_path / "pred", names, tmp_path / "sub.csv.gz")
    column_major = staticmethod(lambda probs, size, rules, classes: {0: DIALECTS["severstal"].encode(
        Carvana.masks(probs, size, rules, classes)[0])})  # fmt: skip  # valid runs, counted in the wrong order
    monkeypatch.setattr(Carvana, "texts", column_major)
    with pytest.raises(
        encode.SubmissionError, match=r"row 1 \(car_00.jpg\): decoded as carvana runs it is not the mask"
    ):
        _write(tmp_path / "pred", names, tmp_path / "sub.csv.gz")
    assert not (tmp_path / "sub.csv.gz").exists()
    monkeypatch.setattr(Carvana, "texts", real)
    assert _write(tmp_path / "pred", names, tmp_path / "sub.csv.gz")["rows"] == 5


def test_names_that_need_quotes_are_quoted_and_read_back(tmp_path):
    names = ["plain_01.jpg", "with,comma.png", 'say "hi".png']
    write_shards(tmp_path / "pred", images=3, names=names)
    assert _write(tmp_path / "pred", names, tmp_path / "sub.csv.gz")["rows"] == 3
    assert list(encode.read(tmp_path / "sub.csv.gz")) == names
