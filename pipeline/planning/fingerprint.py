"""The fingerprint of a competition's training data: what the rules plan from, computed in seconds on a sample.

nnU-Net's fingerprint (sizes, spacings, intensities) says nothing of what decides a Kaggle segmentation: how many
images hold each class, how large and how thin its objects are, what a resolution keeps of them, whether the images
have an up and down. Per class (the foreground of a binary competition; every class but the background of a
multi-class one; every class of a multi-label one) it records: the share of images without it, its pixel share where
present, its objects' areas, their thinness (twice the 10th percentile of each object's largest inscribed radius)
and, for each candidate scale, the Dice its mask keeps after a down- and up-sampling (area mean, then bilinear and a
cut at 0.5: the best a model at that scale can submit). Binary masks also record the background's thinness (ISBI's
membranes). The images: count, sizes, channels, grey or colour, intensity percentiles, and how much their masks and
pixels differ from their vertical and horizontal mirror images.
"""

from __future__ import annotations

import io
import re
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from pipeline.competitions.base import Competition, stem
from pipeline.errors import UserError
from pipeline.images import GRAY_MODES

SCALES = (0.125, 0.25, 0.5, 1.0)  # candidate input scales (more than 1 when the thinness asks: rules.py)
SAMPLE = 96  # images whose masks are measured (class shares, objects)
DETAIL = 12  # of those, images whose objects' thinness and kept Dice are measured at full size
PREFIX = re.compile(r"^(?P<prefix>.+)_(?P<index>\d{2,})$")


class PlanError(UserError):
    """Data the planner cannot plan from; the message says what is missing and the fix."""


@dataclass(frozen=True)
class ClassPrint:
    name: str
    empty: float  # share of images without the class
    share: float  # mean share of an image's pixels where the class is present
    area_p5: float  # object areas in pixels at full size: 5th and 50th percentiles
    area_p50: float
    thin: float  # twice the 10th percentile of the objects' largest inscribed radius, pixels at full size
    kept: dict[str, float] = field(default_factory=dict)  # scale -> mean Dice kept after a down- and up-sampling


@dataclass(frozen=True)
class Fingerprint:
    competition: str
    labels: str  # binary | multiclass | multilabel
    train: int
    test: int
    size: tuple[int, int]  # the median (height, width)
    sizes: int  # distinct sizes among the sampled images
    spread: float  # the largest side over the smallest, among the sampled images' heights and widths
    channels: int
    grey: bool  # colour images whose channels are equal (Severstal's steel is grey in RGB files)
    intensity: dict[str, float]  # p0.5, p99.5, mean, std of the sampled pixels (0..255)
    classes: list[ClassPrint]
    background_thin: float  # binary masks: the thinness of the background's structures (membranes); 0 otherwise
    updown: float  # how far the data is from its upside-down image, in units of its noise (about 1: the same)
    leftright: float  # the same for the mirror image
    groups: str  # prefix (names <prefix>_<NN>, several per prefix) | image
    sampled: int

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict) -> "Fingerprint":
        classes = [ClassPrint(**c) for c in d["classes"]]
        return Fingerprint(**{**d, "classes": classes, "size": tuple(d["size"])})


def class_masks(mask: np.ndarray, labels: str, classes: int) -> list[np.ndarray]:
    """Boolean masks, one per scored class, of a label image (0/1, class indices, or bit masks)."""
    if labels == "multilabel":
        return [((mask >> c) & 1).astype(bool) for c in range(classes)]
    if labels == "multiclass":
        return [mask == c for c in range(1, classes)]
    return [mask > 0]


def kept_dice(mask: np.ndarray, scale: float) -> float:
    """The Dice a mask keeps at `scale`: area-averaged down, bilinear up, cut at 0.5 (1 when both are empty)."""
    if scale >= 1.0 or not mask.any():
        return 1.0
    h, w = mask.shape
    small = (max(1, round(h * scale)), max(1, round(w * scale)))
    t = torch.from_numpy(mask.astype(np.float32))[None, None]
    back = F.interpolate(F.interpolate(t, size=small, mode="area"), size=(h, w), mode="bilinear", align_corners=False)
    pred = back[0, 0].numpy() > 0.5
    return float(2 * (pred & mask).sum() / (pred.sum() + mask.sum()))


def radii(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(each object's area, its largest inscribed radius) for the 8-connected objects of a mask."""
    from scipy import ndimage

    labels, count = ndimage.label(mask, structure=np.ones((3, 3)))
    if count == 0:
        return np.zeros(0), np.zeros(0)
    distance = torch.from_numpy(ndimage.distance_transform_edt(mask).ravel())
    per_object = torch.zeros(count + 1, dtype=distance.dtype)
    per_object.scatter_reduce_(0, torch.from_numpy(labels.ravel().astype(np.int64)), distance, reduce="amax")
    return np.bincount(labels.ravel())[1:].astype(np.float64), per_object[1:].numpy()


def asymmetry(profiles: list[np.ndarray], seed: int = 0) -> float:
    """How far the mean of the images' profiles (their means along one axis) is from its reverse, in units of the
    sample's own noise: the distance between the means of two random halves of the images. Data that looks the same
    mirrored gives about 0.7 (the two differences share the noise); 2 and more, a direction."""
    p = np.asarray(profiles, dtype=np.float64)
    if len(p) < 4:
        return 0.0
    mean = p.mean(axis=0)
    rng, half = np.random.default_rng(seed), len(p) // 2
    splits = [rng.permutation(len(p)) for _ in range(16)]  # several halvings: a steadier noise
    noise = np.mean([np.abs(p[o[:half]].mean(axis=0) - p[o[half:]].mean(axis=0)).mean() for o in splits])
    return float(np.abs(mean - mean[::-1]).mean() / max(noise, 1e-12))


def _grouping(names: list[str]) -> str:
    prefixes = [m["prefix"] for n in names if (m := PREFIX.match(stem(n)))]
    return "prefix" if names and len(prefixes) == len(names) and len(set(prefixes)) < len(names) else "image"


def compute(comp: Competition, name: str, seed: int = 0) -> Fingerprint:
    """The fingerprint of `comp`'s training data, on a seeded sample of its images."""
    names = comp.train_names
    if len(names) < 4:
        raise PlanError(
            f"{comp.root} holds {len(names)} labelled images: at least 4 are needed to plan from (more to train)"
        )
    rng = np.random.default_rng(seed)
    sample = [names[i] for i in sorted(rng.choice(len(names), min(SAMPLE, len(names)), replace=False))]
    class_names = comp.class_names if comp.labels == "multilabel" else comp.class_names[1:] or ["foreground"]
    sizes, pixels, rows, cols, present = [], [], [], [], [[] for _ in class_names]
    areas, inscribed, kept = ([[] for _ in class_names] for _ in range(3))
    background = []
    for k, image_name in enumerate(sample):
        data = comp.read_image(image_name)
        with Image.open(io.BytesIO(data)) as img:
            w, h = img.size
            img.draft("RGB", (w // 8, h // 8))  # JPEG: decoded at a fraction of the size, enough for statistics
            arr = np.asarray(img.convert("RGB") if img.mode not in GRAY_MODES else img)  # 16 bits kept, as trained
        sizes.append((h, w))
        pixels.append(
            arr[:: max(1, arr.shape[0] // 32), :: max(1, arr.shape[1] // 32)].reshape(
                -1, arr.shape[2] if arr.ndim == 3 else 1
            )
        )
        mask = comp.read_mask(image_name, expected=(h, w))
        masks = class_masks(mask, comp.labels, comp.channels if comp.labels != "binary" else 2)
        union = np.logical_or.reduce(masks)[:: max(1, h // 128), :: max(1, w // 128)]
        grey = arr.mean(axis=2) if arr.ndim == 3 else arr.astype(np.float64)
        rows.append((_profile(union, 1), _profile(grey, 1)))
        cols.append((_profile(union, 0), _profile(grey, 0)))
        for c, m in enumerate(masks):
            present[c].append(m.mean())
            if k < DETAIL and m.any():
                a, r = radii(m)
                areas[c].extend(a)
                inscribed[c].extend(r)
                kept[c].append([kept_dice(m, s) for s in SCALES])
        if k < DETAIL and comp.labels == "binary" and masks[0].mean() > 0.5:  # a background that is a structure
            background.extend(radii(~masks[0])[1])
    classes = []
    for c, cname in enumerate(class_names):
        shares = np.array(present[c])
        if not (shares > 0).any():
            continue
        classes.append(
            ClassPrint(
                name=cname,
                empty=float((shares == 0).mean()),
                share=float(shares[shares > 0].mean()),
                area_p5=float(np.percentile(areas[c], 5)) if areas[c] else 0.0,
                area_p50=float(np.percentile(areas[c], 50)) if areas[c] else 0.0,
                thin=float(2 * np.percentile(inscribed[c], 10)) if inscribed[c] else 0.0,
                kept={str(s): float(v) for s, v in zip(SCALES, np.mean(kept[c], axis=0), strict=True)}
                if kept[c]
                else {},
            )
        )
    if not classes:
        raise PlanError(
            f"every sampled mask of {comp.root} is empty: there is nothing to learn; check the masks (their values: "
            f"download.local.mask_values) or the label file"
        )
    all_pixels = np.concatenate(pixels).astype(np.float64)
    median = tuple(int(v) for v in np.median(np.array(sizes), axis=0))
    return Fingerprint(
        competition=name,
        labels=comp.labels,
        train=len(names),
        test=len(comp.test_names),
        size=median,
        sizes=len(set(sizes)),
        spread=float(max(max(s[i] for s in sizes) / min(s[i] for s in sizes) for i in (0, 1))),
        channels=all_pixels.shape[1],
        grey=bool(all_pixels.shape[1] == 3 and np.abs(all_pixels - all_pixels.mean(axis=1, keepdims=True)).max() < 3),
        intensity={
            "p0.5": float(np.percentile(all_pixels, 0.5)),
            "p99.5": float(np.percentile(all_pixels, 99.5)),
            "mean": float(all_pixels.mean()),
            "std": float(all_pixels.std()),
        },
        classes=classes,
        background_thin=float(2 * np.percentile(background, 10)) if background else 0.0,
        updown=max(asymmetry([r[i] for r in rows], seed) for i in (0, 1)),
        leftright=max(asymmetry([c[i] for c in cols], seed) for i in (0, 1)),
        groups=_grouping(names),
        sampled=len(sample),
    )


def _profile(values: np.ndarray, axis: int, bins: int = 64) -> np.ndarray:
    """The mean of an image (or mask) along `axis`, resampled to `bins` points (images of other sizes compare)."""
    line = np.asarray(values, dtype=np.float64).mean(axis=axis)
    return np.interp(np.linspace(0, len(line) - 1, bins), np.arange(len(line)), line)
