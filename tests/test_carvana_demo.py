"""Carvana's demo competition: Kaggle's layout and formats, deterministic bytes, exact masks."""

from __future__ import annotations

import io
import re

import numpy as np
import pandas as pd
from PIL import Image

from pipeline.competitions import open_competition
from pipeline.competitions.archive import ImageArchive
from pipeline.competitions.carvana import DEMO_PARTS, demo, demo_cars, demo_render
from pipeline.masks import rle


def test_layout_names_and_formats_match_kaggle(tiny_demo):
    assert sorted(p.name for p in tiny_demo.iterdir()) == sorted(
        ["train.zip", "train_masks.zip", "test.zip", "train_masks.csv", "sample_submission.csv", "metadata.csv"]
    )
    train = ImageArchive(tiny_demo / "train.zip")
    assert all(re.fullmatch(r"[0-9a-f]{12}_(0[1-9]|1[0-6])\.jpg", n) for n in train.names())
    assert len(train) == 3 * 16
    with Image.open(io.BytesIO(train.read(train.names()[0]))) as img:
        assert (img.format, img.mode, img.size) == ("JPEG", "RGB", (160, 96))
    masks = ImageArchive(tiny_demo / "train_masks.zip")
    with Image.open(io.BytesIO(masks.read(masks.names()[0]))) as gif:
        assert gif.format == "GIF" and gif.mode == "P"
        assert set(np.unique(np.asarray(gif))) == {0, 1}
    sample = pd.read_csv(tiny_demo / "sample_submission.csv")
    assert list(sample.columns) == ["img", "rle_mask"] and len(sample) == 16
    meta = pd.read_csv(tiny_demo / "metadata.csv")
    assert list(meta.columns) == ["id", "year", "make", "model", "trim1", "trim2"] and len(meta) == 4
    assert open_competition(tiny_demo, "demo").verify() == {"train": 48, "test": 16}


def test_the_same_seed_gives_the_same_bytes(tmp_path, tiny_demo):
    demo.generate(tmp_path / "raw", tmp_path / "truth", seed=7, train=3, test=1, width=160, height=96, jobs=2)
    for name in (
        "train.zip",
        "train_masks.zip",
        "test.zip",
        "train_masks.csv",
        "sample_submission.csv",
        "metadata.csv",
    ):
        assert (tmp_path / "raw" / name).read_bytes() == (tiny_demo / name).read_bytes(), name
    demo.generate(tmp_path / "other", tmp_path / "t2", seed=8, train=3, test=1, width=160, height=96, jobs=1)
    assert (tmp_path / "other" / "train.zip").read_bytes() != (tiny_demo / "train.zip").read_bytes()


def test_views_turn_the_car_and_the_mask_covers_exactly_the_car():
    car = demo_cars.make_car(np.random.default_rng(3))
    rgb_front, mask_front = demo_render.render(car, 1, 480, 320, np.random.default_rng(0))
    rgb_side, mask_side = demo_render.render(car, 5, 480, 320, np.random.default_rng(0))
    assert 0.03 < (mask_front > 0).mean() < (mask_side > 0).mean() < 0.45  # a side view shows more car
    # the car differs from the studio backdrop: pixels under the mask are not backdrop grey
    backdrop = np.asarray(demo_render._studio(480, 320)[0], dtype=np.int16)
    diff = np.abs(rgb_side.astype(np.int16) - backdrop).sum(axis=2)
    assert np.median(diff[mask_side > 0]) > 40 and np.median(diff[mask_side == 0]) < 12


def test_multiclass_masks_hold_body_windows_wheels_and_lights():
    car = demo_cars.make_car(np.random.default_rng(5))
    _, mask = demo_render.render(car, 3, 480, 320, np.random.default_rng(0))
    assert set(np.unique(mask)) == set(range(len(DEMO_PARTS)))


def test_truth_is_written_apart_and_matches_the_test_images(tiny_demo):
    truth = pd.read_csv(tiny_demo.parent / "truth" / "test_masks.csv", dtype=str, keep_default_na=False)
    sample = pd.read_csv(tiny_demo / "sample_submission.csv", dtype=str)
    assert list(truth["img"]) == list(sample["img"])
    for code in truth["rle_mask"]:
        rle.validate(code, (96, 160))
        assert rle.area(code) > 0
