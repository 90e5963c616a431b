"""Folds grouped by car (or by image): no group in two folds, balanced, deterministic."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.competitions import CompetitionError
from pipeline.data import split
from tests.conftest import open_carvana


def _images(cars: int) -> list[str]:
    return [f"{i:012x}_{v:02d}.jpg" for i in range(cars) for v in range(1, 17)]


def _folds(images, areas, **kw):
    return split.make_folds(images, areas, [n[:12] for n in images], label="car", **kw)


def test_no_car_is_in_two_folds_and_every_fold_has_cars():
    rng = np.random.default_rng(0)
    images = _images(23)
    table = _folds(images, rng.random(len(images)), folds=5, seed=1, stratify=True)
    assert table.groupby("group")["fold"].nunique().max() == 1
    counts = table.groupby("fold")["group"].nunique()
    assert sorted(counts.index) == [0, 1, 2, 3, 4] and counts.max() - counts.min() <= 1
    assert list(table["img"]) == images


def test_deterministic_for_a_seed_and_different_for_another():
    images = _images(20)
    areas = np.linspace(0.1, 0.3, len(images))
    a = _folds(images, areas, folds=4, seed=3, stratify=True)
    b = _folds(images, areas, folds=4, seed=3, stratify=True)
    c = _folds(images, areas, folds=4, seed=4, stratify=True)
    assert a.equals(b) and not a["fold"].equals(c["fold"])


def test_stratification_spreads_small_and_large_cars_over_folds():
    images = _images(40)
    car_area = np.repeat(np.linspace(0.05, 0.4, 40), 16)
    table = _folds(images, car_area, folds=4, seed=0, stratify=True)
    means = table.groupby("fold")["mask_area"].mean()
    assert means.max() - means.min() < 0.03


def test_group_by_image_and_clear_errors(tiny_demo):
    names = ["0.png", "1.png", "2.png"]
    table = split.make_folds(names, np.ones(3), names, folds=3, seed=0, stratify=False, label="image")
    assert sorted(table["fold"]) == [0, 1, 2]
    comp = open_carvana(tiny_demo)
    with pytest.raises(CompetitionError, match="split.group"):
        comp.group_of("0.png", "car")
    assert comp.group_of("0.png", "image") == "0" and comp.group_of("00087a6bd4dc_01.jpg", "auto") == "00087a6bd4dc"
    with pytest.raises(split.SplitError, match="lower split.folds"):
        _folds(_images(3), np.ones(48), folds=5, seed=0, stratify=True)


def test_the_competition_s_folds_follow_its_label_file(tiny_demo):
    comp = open_carvana(tiny_demo)
    table = split.split_competition(comp, folds=3, seed=0, stratify=True, group="auto")
    assert list(table["img"]) == comp.train_names and table.groupby("group")["fold"].nunique().max() == 1
    assert table["mask_area"].between(0.01, 0.6).all()
