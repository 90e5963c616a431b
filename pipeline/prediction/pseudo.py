"""Pseudo-labels: test images labelled by a finished experiment's own predictions, to train on.

Carvana's 4th place trained again on its confident test predictions. The source is an experiment (or git
revision) whose test predictions and chosen rules (data/predictions, predictor.json) DVC holds; its most confident
images (the mean distance of their probabilities from 0.5, the `fraction` highest) join every fold's training
images, labelled as encode would label them. Only test images are ever pseudo-labelled, so no validation image
is; the source's models did see every training image, the validation folds' included, which makes validation a
little optimistic in a pseudo-label round (as it was for the leaders).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from pipeline import paths
from pipeline.competitions import Competition
from pipeline.errors import UserError
from pipeline.images import Size
from pipeline.masks import postprocess, recipe
from pipeline.masks.postprocess import Rule
from pipeline.prediction import shards


class PseudoLabelError(UserError):
    """A pseudo-label source that is not of this project's test set."""


def check_source(maps: shards.Maps, comp: Competition, competition: str, source: str) -> None:
    """Stop unless the source predicted this competition's current test set: the same names and the same pixels
    (the content hash predict records), so that no image is labelled by a map of another image. The download is
    never blamed: it is the source that must be predicted again."""
    manifest, where = maps.manifest, f"train.pseudo_labels.source: {source}"
    if manifest["images"] == 0:
        raise PseudoLabelError(
            f"{where} predicted no test images, so there is nothing to pseudo-label: choose a source whose download "
            f"had a test set, or set train.pseudo_labels.source to ''"
        )
    recorded = manifest.get("test_set")
    if recorded is None:
        raise PseudoLabelError(
            f"{where}'s predictions do not record which test set they are of (an older version of the pipeline made "
            f"them): run that experiment's predict stage again with this version, then use it"
        )
    if recorded["competition"] != competition:
        raise PseudoLabelError(
            f"{where} predicted the test set of {recorded['competition']!r}, not of this project's "
            f"download.competition {competition!r}: choose a source of this competition"
        )
    if manifest["class_names"] != comp.class_names or manifest["labels"] != comp.labels:
        raise PseudoLabelError(
            f"{where} predicted the classes {manifest['class_names']} ({manifest['labels']}), this project's are "
            f"{comp.class_names} ({comp.labels}): its maps cannot label these images; choose a source trained on them"
        )
    names = comp.test_names
    if recorded["content"] == comp.test.content(names):
        return
    again = "run that experiment's predict stage on this download (or choose a source made from it)"
    theirs, ours = set(maps.names), set(names)
    if theirs != ours:
        alien, unseen = sorted(theirs - ours), sorted(ours - theirs)
        said = [f"{len(alien)} of its {len(theirs)} images are not in this test set (e.g. {alien[0]})"] if alien else []
        said += (
            [f"{len(unseen)} of this test set's {len(ours)} are not among them (e.g. {unseen[0]})"] if unseen else []
        )
        raise PseudoLabelError(f"{where} predicted another test set: {'; '.join(said)}: {again}")
    raise PseudoLabelError(
        f"{where} predicted the same {len(ours)} test image names with other pixels (the test set changed since): "
        f"{again}"
    )


def confidence(probs: np.ndarray) -> float:
    """How decided a uint8 (C, h, w) map is: 0 when every pixel is 0.5, 1 when every pixel is 0 or 1."""
    return float(np.abs(probs.astype(np.float32) - 127.5).mean() / 127.5)


def label(comp: Competition, probs: np.ndarray, original: Size, rules: list[Rule], labels: str) -> np.ndarray:
    """The (H, W) uint8 label of a map in the competition's own mask format: 0/1, class indices or class bits."""
    if labels == "multiclass":
        return postprocess.class_maps(probs, original)
    masks = comp.masks(probs, original, rules, list(range(len(probs))))
    if labels == "binary":
        return masks[0].astype(np.uint8)
    bits = np.zeros(original, np.uint8)
    for c, mask in masks.items():
        bits |= mask.astype(np.uint8) << c
    return bits


class PseudoLabels:
    """The chosen test images with their labels, read as a Competition reads its training images (names,
    read_image, read_mask), so that a training set takes them beside its own."""

    def __init__(self, comp: Competition, folder: Path, chosen: list[tuple[str, float]], rules: list[Rule]):
        self.comp, self.folder, self.rules = comp, folder, rules
        self.names = [name for name, _ in chosen]
        self.confidence = dict(chosen)
        self._maps: tuple[int, shards.Maps] | None = None

    @classmethod
    def choose(cls, comp: Competition, competition: str, folder: Path, fraction: float, source: str) -> PseudoLabels:
        """The `fraction` most confident test images of a source (named `source` in errors) fetched to `folder`
        (members.fetch), once it is known to be of this competition's (`competition`: its slug) test set."""
        maps = shards.Maps(folder / paths.PREDICTIONS)
        try:
            check_source(maps, comp, competition, source)
            scored = sorted(((name, confidence(maps.read(name)[1])) for name in maps.names), key=lambda r: -r[1])
            channels = maps.manifest["classes"]
        finally:
            maps.close()
        chosen = recipe.read(folder / "reports/evaluate/predictor.json")
        rules = recipe.rules(chosen, channels) if chosen else [Rule(0.5)] * channels
        return cls(comp, folder, scored[: max(1, round(fraction * len(scored)))], rules)

    def _open(self) -> shards.Maps:
        """The shards, opened once per process: DataLoader workers must not share a file position."""
        if self._maps is None or self._maps[0] != os.getpid():
            self._maps = (os.getpid(), shards.Maps(self.folder / paths.PREDICTIONS))
        return self._maps[1]

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_maps": None}

    def read_image(self, name: str) -> bytes:
        return self.comp.test.read(name)

    def read_mask(self, name: str, expected: Size | None = None) -> np.ndarray:
        maps = self._open()
        original, probs = maps.read(name)
        return label(self.comp, probs, original, self.rules, maps.manifest["labels"])

    def record(self, source: dict) -> dict:
        """What a pseudo-label round trained on: the source and each image with its confidence."""
        return {
            "source": source,
            "rules": [{"threshold": r.threshold, "min_area": r.min_area} for r in self.rules],
            "images": [{"img": n, "confidence": round(self.confidence[n], 6)} for n in self.names],
        }
