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
        (lambda d: d["split"].update(group="imgae"), r"split.group must be one of 'auto' \| 'prefix' \| 'image', got"),
        (lambda d: d["train"].update(grad_clip=float("inf")), "train.grad_clip must be a finite number, got inf"),
        (lambda d: d["train"].update(lr=float("nan")), "train.lr must be a finite number"),
        (lambda d: d["train"].update(ema=1.0), r"train.ema must be"),
        (lambda d: d["train"].update(batch_size=1_000_000_000), "train.batch_size must be in 1..4096"),
        (lambda d: d["blend"].update(members=["only"]), r"blend.members blends two or more experiments"),
        (lambda d: d["blend"].update(members=["a", "a"]), r"blend.members must be distinct experiment names"),
        (lambda d: d["predict"].update(batch_sise=8), "unknown key predict.batch_sise"),
        (lambda d: d["predict"].update(batch_size=0), r"predict.batch_size must be in 1..4096, got 0"),
        (lambda d: d["train"]["model"].update(base_channels=1_000_000), r"base_channels must be in 1..256"),
        (lambda d: d["train"].update(scale=1e-9), r"train.scale must be in \[0.01, 4\], got 1e-09 \(or auto"),
        (lambda d: d["download"]["local"].update(colors={1: [300, 0, 0]}), r"colors\[1\]\[0\] must be at most 255"),
        (lambda d: d["download"]["local"].update(colors={1: [3, 0]}), r"colors\[1\] must have at least 3 values"),
        (lambda d: d["download"]["local"].update(colors={999: [3, 0, 1]}), r"colors key must be at most 255, got 999"),
    ],
)
def test_bad_values_name_the_key(tmp_path, edit, message):
    with pytest.raises(params.ParamError, match=message):
        params.load(path=_write(tmp_path, edit))


def test_fold_all_means_every_fold(tmp_path):
    p = params.load(path=_write(tmp_path, lambda d: d["split"].update(fold="all", folds=3)))
    assert p["split"].validation_folds() == [0, 1, 2]


def test_every_section_is_checked_whichever_stage_reads(tmp_path):
    path = _write(tmp_path, lambda d: d["predict"].update(tta="maybe"))
    with pytest.raises(params.ParamError, match=r"predict.tta must be one of 'none' \| 'hflip'"):
        params.load("download", path=path)  # the first stage: a typo in predict.* stops it, not hours later


def test_the_former_tta_flag_is_read_once_as_a_set_name(tmp_path):
    for flag, name in ((True, "hflip"), (False, "none"), ("d4", "d4")):
        assert (
            params.load("predict", path=_write(tmp_path, lambda d, f=flag: d["predict"].update(tta=f)))["predict"].tta
            == name
        )


def test_the_quickest_experiment_one_epoch_is_valid(tmp_path):
    p = params.load("train", path=_write(tmp_path, lambda d: d["train"].update(epochs=1)))
    assert p["train"].epochs == 1 and p["train"].warmup_epochs == 1


def test_a_broken_params_file_is_one_line_naming_the_line(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("split:\n  folds: 5\n fold: [0\n")
    with pytest.raises(params.ParamError, match=r"params.yaml is not valid YAML at line \d+ .*fix that line"):
        params.load(path=path)


def test_every_copy_is_validated_naming_the_key():
    p = params.load(path=ROOT / "params.yaml")
    assert params.replace(p["train"], lr=3e-4).lr == 3e-4
    with pytest.raises(params.ParamError, match=r"train.lr must be in \(0, 1\), got 2.0"):
        params.replace(p["train"], lr=2.0)
    with pytest.raises(params.ParamError, match="train.model.arch fpn needs an encoder"):
        params.replace(p["train"].model, arch="fpn")
    with pytest.raises(params.ParamError, match="unknown key train.lrate"):
        params.replace(p["train"], lrate=0.1)


def test_types_are_strict(tmp_path):
    with pytest.raises(params.ParamError, match="train.epochs must be an integer or 'auto' \\(the plan's\\), got True"):
        params.load(path=_write(tmp_path, lambda d: d["train"].update(epochs=True)))
    with pytest.raises(params.ParamError, match="train.lr must be a number or 'auto' \\(the plan's\\), got '0.1'"):
        params.load(path=_write(tmp_path, lambda d: d["train"].update(lr="0.1")))


def test_overrides_read_like_dvc_exp_run_set():
    p = params.load(
        path=ROOT / "params.yaml", overrides=["train.scale=0.5", "split.fold=all", "train.model.encoder=resnet34"]
    )
    assert p["train"].scale == 0.5 and p["split"].validation_folds() == [0, 1, 2, 3, 4]
    assert p["train"].model.encoder == "resnet34"
    with pytest.raises(params.ParamError, match="'train.scale' is not key=value"):
        params.load(path=ROOT / "params.yaml", overrides=["train.scale"])
    with pytest.raises(params.ParamError, match="params.yaml has no section trian"):
        params.load(path=ROOT / "params.yaml", overrides=["trian.lr=0.1"])
    with pytest.raises(params.ParamError, match="train.sacle"):
        params.load(path=ROOT / "params.yaml", overrides=["train.sacle=0.5"])


def test_predict_amp_applies_to_torch_only():
    """ONNX Runtime runs the exported float32 graph: evaluate must then score float32, whatever predict.amp says."""
    base = {"batch_size": 8, "workers": 2, "tta": True, "shard_size": 500, "amp": True, "nproc": 1}
    assert params.PredictParams(**base, backend="torch").mixed_precision
    assert not params.PredictParams(**base, backend="onnxruntime").mixed_precision
    assert not params.PredictParams(**{**base, "amp": False}, backend="torch").mixed_precision
