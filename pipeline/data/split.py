"""Train/validation folds grouped by car, optionally stratified by mask area.

The seeds split per image, so the 16 views of one car land on both sides and validation Dice is
optimistic. Here every view of a car shares a fold; with stratification, cars are sorted by mean mask
area and dealt to the folds in shuffled blocks, so every fold sees small and large cars alike.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from pipeline import rle
from pipeline.download import competition
from pipeline.errors import UserError

CAR_VIEW = re.compile(r"^(?P<car>.+)_(?P<view>\d{2})$")


class SplitError(UserError, ValueError):
    """The images cannot be split as the params ask; the message names the param to change."""


def group_of(name: str, group: str) -> str:
    """The group an image belongs to: its car (`<car>_<NN>.jpg`) or the image itself."""
    stem = name.rsplit(".", 1)[0]
    if group == "image":
        return stem
    match = CAR_VIEW.match(stem)
    if not match:
        raise SplitError(
            f"{name} is not named <car>_<NN>.<ext>, so it cannot be grouped by car; "
            f"set split.group to 'image' for datasets without cars"
        )
    return match["car"]


def mask_areas(train_masks: pd.DataFrame, shape: tuple[int, int]) -> np.ndarray:
    """Fraction of each image covered by its mask, read from the RLE column."""
    pixels = shape[0] * shape[1]
    return np.array([rle.area(code) / pixels for code in train_masks["rle_mask"]], dtype=np.float64)


def make_folds(
    images: list[str], areas: np.ndarray, *, folds: int, seed: int, stratify: bool, group: str
) -> pd.DataFrame:
    """Assign every image a fold; returns a table (img, car, fold, mask_area) in image order."""
    table = pd.DataFrame({"img": images, "mask_area": areas})
    table["car"] = [group_of(n, group) for n in images]
    cars = table.groupby("car", sort=True)["mask_area"].mean()
    if len(cars) < folds:
        raise SplitError(f"split.folds is {folds} but there are only {len(cars)} {group}s; lower split.folds")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(cars))
    names = cars.index.to_numpy()[order]
    if stratify:
        by_area = np.argsort(cars.to_numpy()[order], kind="stable")
        names = names[by_area]
    fold_of = {}
    for start in range(0, len(names), folds):
        block = names[start : start + folds]
        for name, fold in zip(block, rng.permutation(folds)[: len(block)], strict=True):
            fold_of[name] = int(fold)
    table["fold"] = table["car"].map(fold_of).astype(int)
    return table[["img", "car", "fold", "mask_area"]]


def split_competition(
    comp: competition.Competition, *, folds: int, seed: int, stratify: bool, group: str
) -> pd.DataFrame:
    """The folds of a competition's train images (train_masks.csv gives the mask areas to stratify by)."""
    masks = competition.read_csv(comp.root / competition.TRAIN_MASKS_CSV, ("img", "rle_mask"))
    shape = competition.image_size(comp, masks["img"].iloc[0])
    areas = mask_areas(masks, shape)
    return make_folds(masks["img"].tolist(), areas, folds=folds, seed=seed, stratify=stratify, group=group)
