"""Choose a blend's weights on the members' out-of-fold maps, then its rules at full resolution.

Carvana's winners averaged the probability maps of several model families; which weights help is a question for
out-of-fold predictions, never for the leaderboard. Weights on a grid of the simplex are compared at a small size
(PROXY pixels on the long side: the comparison is cheap whatever the images' size); the TOP best of them, equal
weights and every member alone are then scored exactly as evaluate scores one experiment (full resolution, the
competition's rules), and the best of those is the blend: it never scores below its best member out of fold. (The
proxy only shortlists: on the demo it ranked r18 alone first, and at full size 0.7 of r18 was better.)
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from pipeline.competitions import Competition
from pipeline.errors import UserError
from pipeline.images import resize_mask
from pipeline.masks import postprocess
from pipeline.prediction import shards
from pipeline.prediction.blend import combine, common_size, write_blend

PROXY = 256  # long side of the maps on which weights are compared
TOP = 3  # the proxy's best weights that are scored at full size (with equal weights and every member alone)
MAX_POINTS = 70  # weight vectors tried at most: the finest grid of the simplex within that (0.1 up to 3 members)


class BlendError(UserError):
    """Members that cannot be blended."""


def weight_grid(members: int) -> list[tuple[float, ...]]:
    """Every weight vector with steps of 1/n summing to 1, for the finest n in (10, 5, 4, 2, 1) within MAX_POINTS."""
    for parts in (10, 5, 4, 2, 1):
        cuts = itertools.combinations(range(parts + members - 1), members - 1)  # stars and bars
        points = [np.diff([-1, *c, parts + members - 1]) - 1 for c in cuts]
        if len(points) <= MAX_POINTS or parts == 1:
            return [tuple(float(x) / parts for x in p) for p in points]
    raise AssertionError("unreachable")


def _proxy(size: tuple[int, int]) -> tuple[int, int]:
    scale = min(1.0, PROXY / max(size))
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


@dataclass
class Blend:
    weights: list[float]
    board: object  # the competition's scoreboard of the chosen blend, at full resolution
    dice: float  # its out-of-fold score under its best rules
    member_dice: list[float]  # each member alone, scored the same way


def _check(comp: Competition, names: list[str], members: list[tuple[str, Path]], maps: list[shards.Maps]) -> None:
    """Each member's out-of-fold maps are of exactly these training images, with their pixels and labels now: maps of
    images replaced under the same names (or of models trained on labels since corrected) would choose the weights
    and rules on predictions of other data."""
    content = comp.content(sorted(names))
    for (name, _), m in zip(members, maps, strict=True):
        again = f"run {name} again on this download with -S split.fold=all, or remove it from blend.members"
        if sorted(m.names) != sorted(names):
            raise BlendError(
                f"blend.members: {name}'s out-of-fold maps cover {len(set(m.names) & set(names))} of the "
                f"{len(names)} training images of data/split.csv; a member must be run with -S split.fold=all "
                f"on the same data"
            )
        recorded = m.manifest.get("train_set")
        if recorded is None:
            raise BlendError(
                f"blend.members: {name}'s out-of-fold maps do not record which training data they are of (an older "
                f"version of the pipeline made them): {again}"
            )
        if recorded != content:
            raise BlendError(
                f"blend.members: {name}'s out-of-fold maps are of the same {len(names)} training image names with "
                f"other pixels or labels (the data changed since it ran): {again}"
            )


class _CurveSum:
    """The proxy's accumulator: the sum of a scoreboard's per-image Dice curves, taken one image at a time, so that
    its memory stays flat however many images and weight vectors there are."""

    def __init__(self, comp: Competition):
        self.board, self.total, self.count = comp.scoreboard(), 0.0, 0

    def add(self, name: str, q: np.ndarray, truth: np.ndarray) -> None:
        self.board.add_levels(name, q, truth)
        self.total, self.count = self.total + self.board.curves.pop(), self.count + 1
        for kept in ("names", "areas", "confusions", "empty"):
            getattr(self.board, kept, []).clear()

    def score(self, low: float, high: float) -> float:
        """The best mean Dice over the cuts in [low, high] (per class, then averaged), as the boards choose it."""
        mean = np.atleast_2d(self.total / self.count)
        return float(mean[:, postprocess.cut(low) : postprocess.cut(high) + 1].max(axis=1).mean())


def _best_on_proxies(comp, names, maps, size, low, high) -> list[list[float]]:
    """The grid's TOP weights of the best scores at PROXY size, best first."""
    grid = weight_grid(len(maps))
    sums = [_CurveSum(comp) for _ in grid]
    small = _proxy(size)
    for name in tqdm(names, desc="blend weights", unit="img"):
        read = [m.read(name) for m in maps]
        truth = resize_mask(comp.read_mask(name, expected=read[0][0]), small)
        resized = [combine([probs], [1.0], small) for _, probs in read]
        for summed, weights in zip(sums, grid, strict=True):
            summed.add(name, combine(resized, weights, small), truth)
    scores = [summed.score(low, high) for summed in sums]
    return [list(grid[i]) for i in np.argsort(scores, kind="stable")[::-1][:TOP]]


def choose(
    comp: Competition, names: list[str], members: list[tuple[str, Path]], out: Path, low: float, high: float
) -> Blend:
    """Blend the members' out-of-fold maps (name, folder) of the images `names`; the chosen blend's maps go to
    `out` as shards (the next blend can take this one as a member)."""
    maps = [shards.Maps(folder) for _, folder in members]
    try:
        _check(comp, names, members, maps)
        size = common_size([m.manifest["size"] for m in maps])
        alone = [[1.0 if j == i else 0.0 for j in range(len(maps))] for i in range(len(maps))]
        candidates = []
        for weights in [*_best_on_proxies(comp, names, maps, size, low, high), [1 / len(maps)] * len(maps), *alone]:
            if weights not in candidates:
                candidates.append(weights)
        boards = [comp.scoreboard(areas=True) for _ in candidates]
        for name in tqdm(names, desc="blend at full size", unit="img"):
            read = [m.read(name) for m in maps]
            full = comp.read_mask(name, expected=read[0][0])
            for board, weights in zip(boards, candidates, strict=True):
                board.add_levels(name, combine([probs for _, probs in read], weights, size), full)
        dice = [board.choose(low, high)[1]["dice"] for board in boards]
        pick = int(np.argmax(dice))  # the first on a tie: the proxy's order
        write_blend(maps, names, candidates[pick], out, "blend", maps[0].manifest["shard_size"])
        member_dice = [dice[candidates.index(one)] for one in alone]
        return Blend(candidates[pick], boards[pick], dice[pick], member_dice)
    finally:
        for m in maps:
            m.close()
