"""The files params name, fingerprinted for DVC: a replaced file shows, an unchanged one is not read again."""

from __future__ import annotations

import json
import os

from pipeline import inputs, params
from tests.conftest import ROOT


def _params(**train):
    p = params.load(path=ROOT / "params.yaml")
    return {**p, "train": params.replace(p["train"], **train)}


def test_a_replaced_file_changes_its_stage_s_fingerprint_and_nothing_else(tmp_path, monkeypatch):
    weights = tmp_path / "start.pt"
    weights.write_bytes(b"first weights")
    cache = inputs.HashCache(tmp_path / "hashes.json")
    p = _params(init_from=str(weights))
    assert inputs.write(p, tmp_path / "out", cache) == ["download", "train", "blend"]  # first run: all written
    assert inputs.write(p, tmp_path / "out", cache) == []
    weights.write_bytes(b"other weights, same name")
    os.utime(weights, ns=(1, 1))
    assert inputs.write(p, tmp_path / "out", cache) == ["train"]
    train = json.loads((tmp_path / "out/train.json").read_text())
    assert train["init_from"]["sha256"] and train["encoder_weights"] is None


def test_an_unchanged_file_is_not_hashed_again(tmp_path, monkeypatch):
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"x" * 1000)
    calls = []
    monkeypatch.setattr(inputs, "file_hash", lambda path: calls.append(path) or "h")
    model = params.replace(params.load(path=ROOT / "params.yaml")["train"].model, encoder="resnet18",
                           encoder_weights=str(weights))  # fmt: skip
    p = _params(model=model)
    for _ in range(2):  # two runs of the stage, each with the cache the previous one saved
        cache = inputs.HashCache(tmp_path / "h.json")
        inputs.write(p, tmp_path / "out", cache)
        cache.save()
    assert len(calls) == 1  # the second run found it by size and time


def test_a_local_folder_is_listed_not_read(tmp_path):
    data = tmp_path / "data"
    (data / "train").mkdir(parents=True)
    (data / "train/a.jpg").write_bytes(b"a")
    p = params.load(path=ROOT / "params.yaml")
    p = {**p, "download": params.replace(p["download"], source="local",
                                         local=params.replace(p["download"].local, path=str(data)))}  # fmt: skip
    cache = inputs.HashCache(tmp_path / "h.json")
    inputs.write(p, tmp_path / "out", cache)
    (data / "train/b.jpg").write_bytes(b"b")
    assert inputs.write(p, tmp_path / "out", cache) == ["download"]
