"""Pictures of a model's masks on train images, hits green, misses blue, extra pixels red: the overlays that train
logs for each fold and evaluate draws of its worst images. A module of its own, so that training does not depend on
evaluate's loop (an edit there would retrain)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline.competitions import Competition
from pipeline.evaluation import overlay
from pipeline.masks import postprocess
from pipeline.masks.postprocess import Rule
from pipeline.prediction.predictor import load_predictor
from pipeline.runtime import Runtime


def picture(comp: Competition, name: str, probs: np.ndarray, original, rules: list[Rule], caption: str) -> Image.Image:
    """A train image with the mask of uint8 probabilities (C, h, w) under `rules`: hits green, misses blue, extra
    pixels red (every class together)."""
    truth = comp.read_mask(name, expected=original) > 0
    pred = np.logical_or.reduce(list(comp.masks(probs, original, rules, list(range(len(probs)))).values()))
    rgb = np.asarray(Image.open(io.BytesIO(comp.read_image(name))).convert("RGB"))
    return overlay.compare(rgb, pred, truth, caption=caption)


def pictures(
    best: Path,
    comp: Competition,
    names: list[str],
    rules: list[Rule],
    rt: Runtime,
    tta: str = "none",
    scores: dict[str, float] | None = None,
) -> list[tuple[str, Image.Image]]:
    """(name, picture) of train images predicted by a model under `rules` (see `picture`)."""
    predictor = load_predictor([best], rt.device, rt.memory_format)
    out = []
    for name in names:
        x, original = predictor.pre.load(comp.read_image(name), name)
        x = x[None].to(rt.device).contiguous(memory_format=rt.memory_format)
        probs = postprocess.to_uint8(predictor(x, tta, rt.autocast)[0])
        caption = name if scores is None else f"{name}  Dice {scores[name]:.4f}"
        out.append((name, picture(comp, name, probs, original, rules, caption)))
    return out
