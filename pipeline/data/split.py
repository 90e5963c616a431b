"""Train/validation folds grouped (by name prefix: Carvana's car), optionally stratified by mask area.

The seeds split per image, so the 16 views of one car land on both sides and validation Dice is optimistic. Here
every image of a group shares a fold (the group is the competition's: `split.group auto`); with stratification,
groups are sorted by mean mask area and dealt to the folds in shuffled blocks, so every fold sees small and large
masks alike.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.competitions import Competition
from pipeline.errors import UserError


class SplitError(UserError, ValueError):
    """The images cannot be split as the params ask; the message names the param to change."""


def make_folds(
    images: list[str], areas: np.ndarray, groups: list[str], *, folds: int, seed: int, stratify: bool, label: str
) -> pd.DataFrame:
    """Assign every image a fold, all images of a group together; a table (img, group, fold, mask_area)."""
    table = pd.DataFrame({"img": images, "mask_area": areas, "group": groups})
    means = table.groupby("group", sort=True)["mask_area"].mean()
    if len(means) < folds:
        raise SplitError(f"split.folds is {folds} but there are only {len(means)} {label}s; lower split.folds")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(means))
    names = means.index.to_numpy()[order]
    if stratify:
        by_area = np.argsort(means.to_numpy()[order], kind="stable")
        names = names[by_area]
    fold_of = {}
    for start in range(0, len(names), folds):
        block = names[start : start + folds]
        for name, fold in zip(block, rng.permutation(folds)[: len(block)], strict=True):
            fold_of[name] = int(fold)
    table["fold"] = table["group"].map(fold_of).astype(int)
    return table[["img", "group", "fold", "mask_area"]]


def group_label(comp: Competition, group: str) -> str:
    """What a group is called in messages: the competition's unit (Carvana: car) or image."""
    return comp.unit if (comp.group if group == "auto" else group) == "prefix" else "image"


def split_competition(comp: Competition, *, folds: int, seed: int, stratify: bool, group: str) -> pd.DataFrame:
    """The folds of a competition's train images (its label files give the mask areas to stratify by)."""
    images = comp.train_names
    groups = [comp.group_of(n, group) for n in images]
    label = "image" if groups == [n.rsplit(".", 1)[0] for n in images] else group_label(comp, group)
    areas = comp.mask_areas(images)
    return make_folds(images, areas, groups, folds=folds, seed=seed, stratify=stratify, label=label)
