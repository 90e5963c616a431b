"""How the pipeline uses a set of checkpoints: the rules (threshold, minimum object area per output channel) and
the flip TTA and mixed precision under which evaluate chose them.

Written by the evaluate stage beside its metrics, keyed by the checkpoints' SHA-256, and read by encode and
`kseg predict`, which so predicts like the pipeline by default. No torch here: encode starts in a moment.
"""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.errors import UserError
from pipeline.masks.postprocess import Rule
from pipeline.params import tta_set
from pipeline.provenance import file_hash


def write(
    path: Path, checkpoints: list[Path], rules: list[Rule], tta: str, amp: bool, blend: list[dict] | None = None
) -> None:
    """Record how these checkpoints are best used (evaluate's choice), keyed by their hashes; for a blend of
    experiments, no checkpoint (the rules fit the blend, not any one model) and the members with their weights."""
    chosen: dict = {"threshold": rules[0].threshold}
    if len(rules) > 1 or rules[0].whole:
        chosen = {"rules": [_rule(r) for r in rules]}
    recipe = {**chosen, "tta": tta, "amp": amp, "checkpoints": {str(p): file_hash(p) for p in checkpoints}}
    if blend:
        recipe["blend"] = blend
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(recipe, indent=2) + "\n")


def read(path: Path, checkpoint_path: Path | None = None) -> dict | None:
    """The recipe at `path`; with `checkpoint_path`, only when it was chosen for exactly that file's bytes."""
    if not path.is_file():
        return None
    try:
        recipe = json.loads(path.read_text())
        recipe["tta"] = tta_set(recipe["tta"])  # written as true / false before TTA sets
        hashes = set(recipe["checkpoints"].values())
    except (ValueError, KeyError, TypeError, AttributeError) as err:  # not JSON, not text, or another JSON file
        raise UserError(
            f"{path} is not a recipe that evaluate wrote ({type(err).__name__}: {err}): give its "
            f"reports/evaluate/predictor.json, or run `dvc repro evaluate` to write it again"
        ) from None
    if checkpoint_path is not None:
        if not Path(checkpoint_path).is_file() or file_hash(checkpoint_path) not in hashes:
            return None
    return recipe


def _rule(r: Rule) -> dict:
    """A rule as the recipe writes it (the empty-mask rule's fields only where it is on)."""
    written = {"threshold": r.threshold, "min_area": r.min_area}
    return {**written, "top": r.top, "top_pixels": r.top_pixels} if r.top_pixels else written


def rules(recipe: dict, channels: int) -> list[Rule]:
    """One rule per output channel: the recorded ones, or the one threshold for every channel."""
    if "rules" in recipe:
        return [Rule(**r) for r in recipe["rules"]]
    return [Rule(recipe["threshold"])] * channels
