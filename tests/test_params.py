"""params.yaml: every key typed and checked, with messages that name the key."""

from __future__ import annotations

import shutil

import pytest

from pipeline import params
from tests.conftest import ROOT, edit_yaml


def _write(tmp_path, edit):
    path = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", path)
    edit_yaml(path, edit)
    return path


def test_the_project_params_load():
    p = params.load(path=ROOT / "params.yaml")
    assert p["download"].source == "demo"
    assert p["split"].validation_folds() == [p["split"].fold]


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d["split"].update(folds=1), "split.folds must be at least 2"),
        (lambda d: d["split"].update(fold=7), r"split.fold must be in 0..4"),
        (lambda d: d["split"].update(fold="some"), r"split.fold must be"),
        (lambda d: d["split"].update(fols=3), "unknown key split.fols"),
        (lambda d: d["download"].update(source="ftp"), "download.source must be one of"),
        (lambda d: d["download"]["demo"].update(width="wide"), "download.demo.width must be an integer"),
        (lambda d: d["download"].pop("hq"), "lacks download.hq"),
        (lambda d: d["download"].update(source="local"), "download.local.path must name the folder"),
    ],
)
def test_bad_values_name_the_key(tmp_path, edit, message):
    with pytest.raises(params.ParamError, match=message):
        params.load(path=_write(tmp_path, edit))


def test_fold_all_means_every_fold(tmp_path):
    p = params.load(path=_write(tmp_path, lambda d: d["split"].update(fold="all", folds=3)))
    assert p["split"].validation_folds() == [0, 1, 2]
