"""Folds grouped by car: no car in two folds, balanced, deterministic."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.data import split


def _images(cars: int) -> list[str]:
    return [f"{i:012x}_{v:02d}.jpg" for i in range(cars) for v in range(1, 17)]


def test_no_car_is_in_two_folds_and_every_fold_has_cars():
    rng = np.random.default_rng(0)
    images = _images(23)
    table = split.make_folds(images, rng.random(len(images)), folds=5, seed=1, stratify=True, group="car")
    assert table.groupby("car")["fold"].nunique().max() == 1
    counts = table.groupby("fold")["car"].nunique()
    assert sorted(counts.index) == [0, 1, 2, 3, 4] and counts.max() - counts.min() <= 1
    assert list(table["img"]) == images


def test_deterministic_for_a_seed_and_different_for_another():
    images = _images(20)
    areas = np.linspace(0.1, 0.3, len(images))
    a = split.make_folds(images, areas, folds=4, seed=3, stratify=True, group="car")
    b = split.make_folds(images, areas, folds=4, seed=3, stratify=True, group="car")
    c = split.make_folds(images, areas, folds=4, seed=4, stratify=True, group="car")
    assert a.equals(b) and not a["fold"].equals(c["fold"])


def test_stratification_spreads_small_and_large_cars_over_folds():
    images = _images(40)
    car_area = np.repeat(np.linspace(0.05, 0.4, 40), 16)
    table = split.make_folds(images, car_area, folds=4, seed=0, stratify=True, group="car")
    means = table.groupby("fold")["mask_area"].mean()
    assert means.max() - means.min() < 0.03


def test_group_by_image_and_clear_errors():
    table = split.make_folds(["0.png", "1.png", "2.png"], np.ones(3), folds=3, seed=0, stratify=False, group="image")
    assert sorted(table["fold"]) == [0, 1, 2]
    with pytest.raises(split.SplitError, match="split.group"):
        split.make_folds(["0.png", "1.png"], np.ones(2), folds=2, seed=0, stratify=False, group="car")
    with pytest.raises(split.SplitError, match="lower split.folds"):
        split.make_folds(_images(3), np.ones(48), folds=5, seed=0, stratify=True, group="car")
