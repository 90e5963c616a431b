"""The plan: every param set to `auto` chosen by the rules (pipeline.planning.rules) from the data's fingerprint and
the speed measured on this machine, written where the stages and `dvc exp show` read it.

- data/plan/<stage>.json: the values each stage reads (pipeline.planning.resolve);
- reports/plan/plan.json: every planned value with its reason and who chose it (the rule, or the user: a value set
  in params.yaml wins), a DVC metric that `dvc exp show` lists beside the scores; reports/plan/fingerprint.json.
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import Any

from pipeline import params as P
from pipeline.planning import fingerprint, rules
from pipeline.planning.fingerprint import Fingerprint
from pipeline.planning.resolve import STAGES, value_of


def make(fp: Fingerprint, p: dict, measure) -> dict[str, rules.Choice]:
    """The plan of these params (every section loaded) for data of fingerprint `fp`: each `auto` chosen by its rule,
    each other value the user's. `measure(train_params)` gives the seconds of one epoch of one fold on this machine
    (the train params with the scale, width and batch chosen so far) and its `device` (kind, name)."""
    t, s = p["train"], p["split"]
    chosen: dict[str, rules.Choice] = {}

    def pick(key: str, rule) -> Any:
        given = value_of(p, key)
        chosen[key] = rules.Choice(given, "set in params.yaml", "user") if given != "auto" else rule()
        return chosen[key].value

    def device(seconds: dict | None = None) -> rules.Device:
        return rules.Device(*measure.device, seconds or {})

    pick("split.group", lambda: rules.group(fp))
    scale = pick("train.scale", lambda: rules.scale(fp))
    width = pick("train.model.base_channels", lambda: rules.width(device(), t.model.has_encoder))
    size = pick("train.batch_size", lambda: rules.batch(fp, device(), s.folds))
    pretrained = t.model.has_encoder and t.model.encoder_weights != "none"
    pick("train.lr", lambda: rules.lr(pretrained))

    def epochs() -> rules.Choice:  # timed only when planned: an epoch's steps take seconds
        timed = P.replace(t, scale=scale, batch_size=size, epochs=1, model=P.replace(t.model, base_channels=width))
        return rules.epochs(fp, device({scale: measure(timed)}), scale, t.minutes, s.folds, len(s.validation_folds()))

    pick("train.epochs", epochs)
    bce, dice = rules.loss(fp)
    pick("train.bce_weight", lambda: bce)
    pick("train.dice_weight", lambda: dice)
    hflip, vflip = rules.flips(fp)
    pick("train.augment.hflip", lambda: hflip)
    pick("train.augment.vflip", lambda: vflip)
    saturation, hue = rules.colour(fp)
    pick("train.augment.saturation", lambda: saturation)
    pick("train.augment.hue", lambda: hue)
    low, high = rules.thresholds(fp)
    pick("evaluate.threshold_min", lambda: low)
    pick("evaluate.threshold_max", lambda: high)
    pick("evaluate.empty_rule", lambda: rules.empty_rule(fp))
    pick("predict.tta", lambda: rules.tta(fp))
    return chosen


def write(plan: dict[str, rules.Choice], fp: Fingerprint, values: Path, reports: Path) -> None:
    """The stages' files in `values`, the plan with its reasons and the fingerprint in `reports`."""
    values.mkdir(parents=True, exist_ok=True)
    reports.mkdir(parents=True, exist_ok=True)
    for stage, keys in STAGES.items():
        (values / f"{stage}.json").write_text(json.dumps({k: plan[k].value for k in keys}, indent=1) + "\n")
    (reports / "plan.json").write_text(json.dumps({k: c.to_dict() for k, c in plan.items()}, indent=1) + "\n")
    (reports / "fingerprint.json").write_text(json.dumps(fp.to_dict(), indent=1) + "\n")


class Speed:
    """`make`'s `measure` on this machine: the device and the seconds of an epoch (budget.EpochTimer), set up only
    when a rule asks: the budget module, training's Runtime and a timed step take seconds that a plan whose
    device-bound values are all set does without."""

    def __init__(self, comp, p: dict):
        self.comp, self.split, self.train = comp, p["split"], p["train"]

    @cached_property
    def timer(self):
        from pipeline import budget

        return budget.EpochTimer(self.comp, self.split, self.train)

    @property
    def device(self) -> tuple[str, str]:
        return self.timer.device

    def __call__(self, t: P.TrainParams) -> float:
        return self.timer(t)


def planned(p: dict, comp, name: str) -> dict[str, rules.Choice]:
    """The plan of params `p` (every section) for the competition folder `comp`, fingerprinted (and timed) now."""
    return make(fingerprint.compute(comp, name), p, Speed(comp, p))


def describe(plan: dict[str, rules.Choice]) -> str:
    """The plan as lines: value, who chose it, and why."""
    width = max(len(k) for k in plan)
    return "\n".join(
        f"{k:<{width}}  {c.value!s:<8} {'(yours) ' if c.by == 'user' else ''}{c.reason}" for k, c in plan.items()
    )
