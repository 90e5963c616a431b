"""The rules that turn a fingerprint, the device's measured speed and the time given into the plan: each a small
function of its inputs that returns its choice and the one-line reason, so that each can be tested on a synthetic
fingerprint (tests/test_planning.py). A value the user set in params.yaml wins; the plan marks it as the user's.
docs/explanation-planning.md tabulates the rules and the evidence behind each.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from pipeline.planning.fingerprint import SCALES, Fingerprint, PlanError

KEPT = 0.98  # the Dice a class's mask must keep at the input scale
THIN_PX = 2.0  # the width its thinnest structures must keep, in input pixels
UPSCALES = (2.0, 4.0)  # scales above 1, for structures too thin for even the full size
SPARSE = 0.01  # a class is sparse under this share of the pixels where it is present
EMPTY = 0.30  # the empty-mask rule is searched when a class is empty in this share of the images or more
IMAGES_SEEN = 1200  # training images a model from scratch sees at least (x 2.5 for a sparse class)
EPOCHS = (8, 60)  # the range of planned epochs
ASYMMETRY = 2.0  # an axis whose flip changes the data this many times its noise or more has a direction


@dataclass(frozen=True)
class Choice:
    value: Any
    reason: str
    by: str = "rule"  # rule | user

    def to_dict(self) -> dict:
        return {"value": self.value, "reason": self.reason, "by": self.by}


@dataclass(frozen=True)
class Device:
    """What the plan knows of the machine: its kind and the measured seconds of an epoch at a given input scale."""

    kind: str  # cpu | cuda
    name: str
    epoch_seconds: dict[float, float]  # scale -> seconds of one epoch (training and validation) of one fold


def _sparse(fp: Fingerprint) -> list[str]:
    return [c.name for c in fp.classes if c.share < SPARSE]


def _thinnest(fp: Fingerprint) -> tuple[float, str]:
    found = [(c.thin, c.name) for c in fp.classes if c.thin > 0]
    if fp.background_thin > 0:
        found.append((fp.background_thin, "the background"))
    return min(found) if found else (math.inf, "")


SPREAD = 1.25  # images whose sides differ more than this have no one scale


def scale(fp: Fingerprint) -> Choice:
    if fp.spread > SPREAD:
        raise PlanError(
            f"the images come in {fp.sizes} sizes (sides up to {fp.spread:.1f}x apart; the median is "
            f"{fp.size[1]}x{fp.size[0]}): one input scale would not fit them all; set train.scale yourself (and "
            f"train.crop for training windows of one size)"
        )
    thin, what = _thinnest(fp)
    for s in (*SCALES, *UPSCALES):
        kept = min((c.kept.get(str(s), 1.0) for c in fp.classes), default=1.0)
        if kept >= KEPT and thin * s >= THIN_PX:
            worst = min(fp.classes, key=lambda c: c.kept.get(str(s), 1.0))
            below = [x for x in SCALES if x < s]
            lower = (
                f"; at {below[-1]:g}: Dice {min(c.kept.get(str(below[-1]), 1.0) for c in fp.classes):.3f}, "
                f"{thin * below[-1]:.1f} px"
                if below
                else ""
            )
            return Choice(
                s,
                f"the smallest scale keeping every class's mask (Dice {kept:.3f}, {worst.name}) and its thinnest "
                f"structures ({what}: {thin:.1f} px -> {thin * s:.1f}) at {KEPT} and {THIN_PX:g} px{lower}",
            )
    return Choice(UPSCALES[-1], f"even at {UPSCALES[-1]:g}x the thinnest structures ({what}) stay under {THIN_PX:g} px")


def group(fp: Fingerprint) -> Choice:
    if fp.groups == "prefix":
        return Choice("prefix", "names are <prefix>_<NN>, several per prefix: views of one object stay in one fold")
    return Choice("image", "names carry no group: each image is its own")


def width(device: Device, has_encoder: bool) -> Choice:
    if has_encoder:
        return Choice(8, "unused: the encoder sets the network's width")
    if device.kind == "cuda":
        return Choice(32, f"32 channels on a GPU ({device.name}): nnU-Net's first level")
    return Choice(8, "8 channels on a CPU: a wider network costs each epoch 3x per doubling")


def batch(fp: Fingerprint, device: Device, folds: int) -> Choice:
    n = _train_images(fp, folds)
    if device.kind == "cuda":
        return Choice(16, f"16 on a GPU ({device.name})")
    b = max(2, min(8, n // 8))
    return Choice(b, f"8 on a CPU, at most an eighth of the {n} training images (at least 2)")


def lr(pretrained: bool) -> Choice:
    if pretrained:
        return Choice(3e-4, "AdamW 3e-4: pretrained encoder weights want a small step")
    return Choice(3e-3, "AdamW 3e-3: a network from scratch")


def _train_images(fp: Fingerprint, folds: int) -> int:
    return max(1, fp.train - fp.train // folds)


def epochs(fp: Fingerprint, device: Device, chosen_scale: float, minutes: float, folds: int, models: int) -> Choice:
    """`folds` of split.folds, `models` of them trained (split.fold all: every one)."""
    n = _train_images(fp, folds)
    sparse = _sparse(fp)
    seen = IMAGES_SEEN * (2.5 if sparse else 1.0)
    wanted = min(max(math.ceil(seen / n), EPOCHS[0]), EPOCHS[1])
    per_epoch = device.epoch_seconds[chosen_scale]
    if per_epoch * models > minutes * 60:
        raise PlanError(
            f"train.minutes {minutes:g} is too short for even one epoch at scale {chosen_scale:g} ({per_epoch:.0f} s "
            f"an epoch on {device.name}, x {models} model(s)): raise train.minutes, or set train.scale lower"
        )
    fits = int(minutes * 60 // (per_epoch * models))
    why = f"to see {seen:,.0f} training images ({n} a fold" + (f"; {', '.join(sparse)} sparse" if sparse else "") + ")"
    if fits < wanted:
        return Choice(
            fits,
            f"what {minutes:g} min allow at {per_epoch:.0f} s an epoch on {device.name} (x {models} model(s)); "
            f"{wanted} wanted {why}: raise train.minutes for them",
        )
    return Choice(wanted, f"{wanted} epochs {why}, {wanted * per_epoch * models / 60:.1f} min on {device.name}")


def loss(fp: Fingerprint) -> tuple[Choice, Choice]:
    sparse = _sparse(fp)
    if sparse:
        why = f"{', '.join(sparse)} cover under {SPARSE:.0%} of the pixels where present: more weight on Dice"
        return Choice(1.0, why), Choice(2.0, why)
    why = "BCE + soft Dice, equal weights: no class is sparse"
    return Choice(1.0, why), Choice(1.0, why)


def flips(fp: Fingerprint) -> tuple[Choice, Choice]:
    """Training mirrors along one allowed axis, left-right first; TTA (below) uses every allowed one. A second flip
    in training made a short training converge later: the Severstal demo's 20 epochs scored 0.82 with both flips
    and 0.91 with the mirror image only (docs/explanation-planning.md)."""
    lr_ok, ud_ok = fp.leftright < ASYMMETRY, fp.updown < ASYMMETRY
    lr_how = f"asymmetry {fp.leftright:.1f} of its noise; {ASYMMETRY:g}+: a direction"
    ud_how = f"asymmetry {fp.updown:.1f}"
    if lr_ok:
        h = Choice(0.5, f"the data looks the same mirrored ({lr_how})")
    else:
        h = Choice(0.0, f"the data has a left and a right ({lr_how})")
    if ud_ok and lr_ok:
        v = Choice(0.0, f"the data looks the same upside down ({ud_how}), but one flip trains faster: TTA has it")
    elif ud_ok:
        v = Choice(0.5, f"the data looks the same upside down ({ud_how}), and not mirrored")
    else:
        v = Choice(0.0, f"the data has an up and a down ({ud_how})")
    return h, v


def colour(fp: Fingerprint) -> tuple[Choice, Choice]:
    if fp.grey or fp.channels == 1:
        why = "grey images: no saturation or hue to vary"
        return Choice(0.0, why), Choice(0.0, why)
    why = "colour images: saturation and hue varied a little"
    return Choice(0.2, why), Choice(0.03, why)


def tta(fp: Fingerprint) -> Choice:
    lr_ok, ud_ok = fp.leftright < ASYMMETRY, fp.updown < ASYMMETRY
    h, w = fp.size
    if lr_ok and ud_ok and max(h, w) <= 1.2 * min(h, w):
        return Choice("d4", "both flips allowed and square images: the 8 flips and transposes")
    if lr_ok and ud_ok:
        return Choice("hvflip", "both flips allowed, images not square (transposes would show unseen shapes)")
    if lr_ok:
        return Choice("hflip", "the mirror image only: the data has an up and a down")
    if ud_ok:
        return Choice("vflip", "upside down only: the data has a left and a right")
    return Choice("none", "the data has a direction both ways: no flip")


def thresholds(fp: Fingerprint) -> tuple[Choice, Choice]:
    sparse = _sparse(fp)
    if sparse:
        why = f"wide: {', '.join(sparse)} sparse, whose best thresholds stray from 0.5"
        return Choice(0.1, why), Choice(0.9, why)
    why = "around 0.5: no class is sparse"
    return Choice(0.2, why), Choice(0.8, why)


def empty_rule(fp: Fingerprint) -> Choice:
    often = [f"{c.name} {c.empty:.0%}" for c in fp.classes if c.empty >= EMPTY]
    if often:
        return Choice(True, f"images without a class are common ({', '.join(often)}): search the empty-mask rule")
    return Choice(False, f"every class is in at least {1 - EMPTY:.0%} of the images: no empty-mask rule")
