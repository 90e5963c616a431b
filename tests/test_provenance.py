"""Which code and data made a result: dvc.yaml deps against the import closure, content fingerprints."""

from __future__ import annotations

import shutil

import pandas as pd
import torch
from ruamel.yaml import YAML

from pipeline import provenance, training
from pipeline.competitions.archive import ImageArchive
from pipeline.data import split
from pipeline.prediction import predict
from pipeline.prediction.predictor import load_predictor
from tests.conftest import ROOT, open_carvana, repaint, tiny_train_params


def _rel(paths) -> list[str]:
    return [str(p.relative_to(ROOT)) for p in paths]


def test_every_stage_lists_its_whole_import_closure_in_dvc_yaml():
    stages = YAML(typ="safe", pure=True).load((ROOT / "dvc.yaml").read_text())["stages"]
    wheel = {str(p.relative_to(ROOT)) for p in (ROOT / "pipeline").rglob("*.py")}
    for name, stage in stages.items():
        closure = _rel(provenance.closure(ROOT / "stages" / f"{name}.py"))
        if name == "package":  # what it bundles: the wheel holds every module
            closure = sorted(set(closure) | wheel)
        missing = [m for m in closure if m not in stage["deps"]]
        assert not missing, f"dvc.yaml: stage {name} imports {', '.join(missing)} but does not list it in deps"
        stale = [d for d in stage["deps"] if d.endswith(".py") and d not in closure]
        assert not stale, f"dvc.yaml: stage {name} lists {', '.join(stale)}, which it does not import"


def test_the_closure_follows_imports_inside_functions_and_the_package_init(tmp_path):
    train = _rel(provenance.closure(ROOT / "stages" / "train.py"))
    assert "pipeline/models/encoders.py" in train  # imported inside create_model only
    assert "pipeline/__init__.py" in train and "pipeline/models/__init__.py" in train
    assert not any(p.startswith("pipeline/kaggle_api/") for p in train)
    assert "pipeline/models/unet.py" not in _rel(provenance.closure(ROOT / "stages" / "submit.py"))


def test_the_code_version_changes_with_any_module_in_the_closure(tmp_path, monkeypatch):
    copy = tmp_path / "project"
    shutil.copytree(ROOT / "pipeline", copy / "pipeline", ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(provenance, "ROOT", copy)
    entry = copy / "pipeline" / "training.py"
    before = provenance.code_version(entry)
    (copy / "pipeline" / "kaggle_api" / "kernels.py").write_text("# not imported by training\n")
    assert provenance.code_version(entry) == before
    with open(copy / "pipeline" / "models" / "losses.py", "a") as f:
        f.write("\n# an edit\n")
    assert provenance.code_version(entry) != before


def test_other_pixels_under_the_same_names_change_the_content_hash(tiny_demo, tmp_path):
    copy = tmp_path / "test.zip"
    shutil.copy(tiny_demo / "test.zip", copy)
    names = ImageArchive(copy).names()
    before = ImageArchive(copy).content(names)
    repaint(copy, names[:1])
    assert ImageArchive(copy).names() == names
    assert ImageArchive(copy).content(names) != before
    assert ImageArchive(copy).content(names[1:]) == ImageArchive(tiny_demo / "test.zip").content(names[1:])


def test_training_on_other_pixels_starts_over_instead_of_resuming(tiny_demo, tmp_path, capsys):
    raw = tmp_path / "raw"
    shutil.copytree(tiny_demo, raw)
    p = tiny_train_params(epochs=1)
    masks = pd.read_csv(raw / "train_masks.csv", dtype=str, keep_default_na=False)
    names = masks["img"].tolist()
    table = split.make_folds(names, [0.0] * len(names), [n[:12] for n in names], folds=3, seed=0, stratify=False,
                             label="car")  # fmt: skip

    def fit():
        training.train_fold(p, training.setup(p), open_carvana(raw), table, 0, tmp_path / "m", progress=False)

    fit()
    fit()
    assert "resuming from" in capsys.readouterr().out
    repaint(raw / "train.zip", {table["img"].iloc[0]})
    fit()
    assert "comes from other params, data or code; training from scratch" in capsys.readouterr().out


def test_a_test_set_with_other_pixels_deletes_the_old_shards(tiny_demo, tiny_model, tmp_path):
    copy = tmp_path / "test.zip"
    shutil.copy(tiny_demo / "test.zip", copy)
    names = ImageArchive(copy).names()
    predictor = load_predictor([tiny_model], torch.device("cpu"))
    out = tmp_path / "pred"
    first = predict.prepare(out, names, 8, predictor, {}, ImageArchive(copy), "carvana-image-masking-challenge")
    (out / "shard-00000.zip").write_bytes(b"finished earlier")
    assert predict.prepare(out, names, 8, predictor, {}, ImageArchive(copy), "carvana-image-masking-challenge") == first
    assert (out / "shard-00000.zip").is_file()  # same images: kept for resuming
    repaint(copy, names[-1:])
    assert predict.prepare(out, names, 8, predictor, {}, ImageArchive(copy), "carvana-image-masking-challenge") != first
    assert not (out / "shard-00000.zip").exists()
