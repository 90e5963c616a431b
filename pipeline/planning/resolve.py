"""The plan as the stages read it: data/plan/<stage>.json holds the values each stage needs (split, train, evaluate,
predict), a dependency of that stage alone, so that a choice of predict's (its TTA set) never retrains. This module
imports no planning code: a change to the rules reruns the plan stage, and a stage only when its values change.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from pipeline import params as P
from pipeline.errors import UserError

STAGES = {  # the planned params, by the stage that reads them
    "split": ("split.group",),
    "train": (
        "train.scale", "train.model.base_channels", "train.batch_size", "train.lr", "train.epochs",
        "train.bce_weight", "train.dice_weight", "train.augment.hflip", "train.augment.vflip",
        "train.augment.saturation", "train.augment.hue",
    ),
    "evaluate": ("evaluate.threshold_min", "evaluate.threshold_max", "evaluate.empty_rule"),
    "predict": ("predict.tta",),
}  # fmt: skip
PLANNED = tuple(key for keys in STAGES.values() for key in keys)


def value_of(p: dict, key: str) -> Any:
    """The value of a dotted key (train.augment.hflip) in loaded params."""
    section, *path = key.split(".")
    node = p[section]
    for part in path:
        node = getattr(node, part)
    return node


def _replace(section, prefix: str, values: dict[str, Any]):
    """A params section with the planned values of its keys (nested sections too) put in for `auto`."""
    changes = {}
    for name in type(section).model_fields:
        key = f"{prefix}.{name}"
        current = getattr(section, name)
        if isinstance(current, BaseModel):
            changes[name] = _replace(current, key, values)
        elif current == "auto" and key in values:
            changes[name] = values[key]
    return P.replace(section, **changes) if changes else section


def resolved(p: dict, folder: Path, *stages: str) -> dict:
    """The loaded params with every `auto` of these stages' sections replaced by the plan in `folder` (what the
    stage runs with); UserError when the plan is missing or leaves one."""
    values: dict[str, Any] = {}
    for stage in stages:
        path = folder / f"{stage}.json"
        if not path.is_file():
            raise UserError(f"{path} is missing: run `dvc repro plan` (the plan of every param set to auto)")
        values.update(json.loads(path.read_text()))
    out = resolve(p, values)
    left = [k for k in PLANNED if any(k in STAGES[s] for s in stages) and _has(out, k) and value_of(out, k) == "auto"]
    if left:
        raise UserError(f"{left[0]} is auto but the plan in {folder} has no value for it: run `dvc repro plan`")
    return out


def resolve(p: dict, values: dict[str, Any]) -> dict:
    """The loaded params with each `auto` whose key `values` holds replaced by that value."""
    return {name: _replace(section, name, values) for name, section in p.items()}


def _has(p: dict, key: str) -> bool:
    try:
        value_of(p, key)
        return True
    except AttributeError:
        return False
