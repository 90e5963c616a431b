"""The evaluate stage's loop scores exactly what the submission path would submit."""

from __future__ import annotations

import shutil
from dataclasses import replace

import pytest
import torch

from pipeline import runtime
from pipeline.evaluation import evaluate, pictures
from pipeline.masks import postprocess, rle
from pipeline.masks import scoring as metrics
from pipeline.masks.postprocess import Rule
from pipeline.prediction import shards
from pipeline.prediction.predictor import load_predictor
from tests.conftest import open_carvana, tiny_folds

CPU = runtime.for_inference(amp=True)  # predict's Runtime on this CPU: bf16 where it is native, channels_last


@pytest.fixture()
def models(tiny_model, tmp_path):
    (tmp_path / "models" / "fold0").mkdir(parents=True)
    shutil.copyfile(tiny_model, tmp_path / "models" / "fold0" / "best.pt")
    return tmp_path / "models"


BF16 = replace(CPU, dtype=torch.bfloat16, autocast=runtime.autocast(CPU.device, torch.bfloat16))  # on any CPU


@pytest.mark.parametrize("rt", [CPU, BF16], ids=["this CPU's Runtime", "bf16 autocast"])
def test_each_image_is_scored_as_its_encoded_mask_would_be_and_its_map_kept(tiny_demo, models, tmp_path, rt):
    comp, table = open_carvana(tiny_demo), tiny_folds(tiny_demo)
    board, fold_of = evaluate.evaluate_folds(
        comp, table, models, [0], batch_size=1, workers=0, tta="hflip", rt=rt, oof=tmp_path / "oof"
    )
    validation = table.loc[table["fold"] == 0, "img"].tolist()
    assert sorted(board.names) == sorted(validation) and set(fold_of.values()) == {0}
    kept = shards.Maps(tmp_path / "oof")  # what a blend of experiments reads
    assert sorted(kept.names) == sorted(validation)
    predictor = load_predictor([models / "fold0" / "best.pt"], rt.device, rt.memory_format)
    for name, score in zip(board.names, board.per_image(0.4), strict=True):
        x, original = predictor.pre.load(comp.read_image(name), name)
        probs = postprocess.to_uint8(
            predictor(x[None].contiguous(memory_format=rt.memory_format), "hflip", rt.autocast)[0]
        )
        assert kept.read(name)[0] == tuple(original) and (kept.read(name)[1] == probs).all()
        runs = postprocess.mask_runs(postprocess.car_probability(probs), original, 0.4)  # what encode writes
        submitted = rle.decode(rle.format_runs(runs), original)
        truth = comp.read_mask(name, expected=original) > 0
        assert score == pytest.approx(metrics.dice(submitted, truth), abs=1e-12)


def test_the_sweep_picks_the_best_cut_in_its_range(tiny_demo, models, tmp_path):
    comp, table = open_carvana(tiny_demo), tiny_folds(tiny_demo)
    board, _ = evaluate.evaluate_folds(
        comp, table, models, [0], batch_size=4, workers=0, tta="none", rt=CPU, oof=tmp_path / "oof"
    )
    threshold, dice, table_ = board.sweep(0.3, 0.7)
    assert 0.3 <= threshold <= 0.7 and len(table_) == postprocess.cut(0.7) - postprocess.cut(0.3) + 1
    assert dice == pytest.approx(board.dice(threshold)) and dice >= board.dice(0.5)


def test_pictures_are_full_size_overlays(tiny_demo, models):
    comp = open_carvana(tiny_demo)
    names = tiny_folds(tiny_demo)["img"].tolist()[:2]
    rules = [Rule(0.5)]
    shown = pictures.pictures(models / "fold0" / "best.pt", comp, names, rules, CPU, scores=dict.fromkeys(names, 0.5))
    assert [n for n, _ in shown] == names and shown[0][1].width >= 160
