"""A miniature Severstal competition, rendered deterministically from a seed: grey steel strips with the four kinds
of defect, in the files Kaggle serves.

Each strip is a rolled-steel texture (rolling bands, a slow brightness drift, vertical grain, sensor noise; now and
then the plate ends and the frame goes dark, as in the real images) on which some of four defect kinds are drawn,
each with its exact mask: 1 pitting (clusters of small dark pits), 2 vertical scratches (thin bright lines),
3 long streaks (dark bands along the strip, the commonest), 4 blotches (large dark irregular patches). An image
holds none of them, one, two or three (the classes co-occur and may even touch), so that about half of the
(image, class) pairs are empty: an all-empty submission scores about 0.55, not Severstal's 0.85, which keeps the
demo a test of segmentation. Files: `severstal-steel-defect-detection.zip` (train_images/, test_images/, the two
CSV files) with `train.csv` (ImageId,ClassId,EncodedPixels; column-major runs) and `sample_submission.csv`
(ImageId,EncodedPixels,ClassId; four rows per test image) beside it; the test truth, in train.csv's layout, goes
to a separate folder that no pipeline stage reads.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from pipeline.competitions.archive import write_member
from pipeline.competitions.base import write_csv
from pipeline.competitions.severstal import CLASSES, SAMPLE_CSV, TEST_FOLDER, TRAIN_CSV, TRAIN_FOLDER, ZIP
from pipeline.masks.rle import DIALECTS

PER_GROUP = 16  # images per unit of download.demo.train / test
KINDS = (0.06, 0.26, 0.44, 0.24)  # how many defect classes an image holds: 0, 1, 2 or 3
CLASS_WEIGHTS = (0.22, 0.16, 0.36, 0.26)  # which: streaks most often, scratches least, as in the real data
TRUTH = "test.csv"  # the test labels, in train.csv's layout


def _steel(rng: np.random.Generator, width: int, height: int) -> tuple[np.ndarray, tuple[int, int]]:
    """A grey steel texture (H, W) float32 in 0..255, and the columns [left, right) that the plate covers."""
    x = np.arange(width, dtype=np.float32)
    y = np.arange(height, dtype=np.float32)[:, None]
    base = rng.uniform(90, 140)
    drift = sum(rng.uniform(3, 9) * np.sin(2 * np.pi * x / (rng.uniform(0.2, 1.0) * width) + rng.uniform(0, 6.3))
                for _ in range(2))  # fmt: skip
    bands = 5 * np.sin(2 * np.pi * y / rng.uniform(20, 60) + rng.uniform(0, 6.3))
    grain = np.convolve(rng.normal(0, 4, width + 8), np.ones(9) / 3, mode="valid")[:width]
    steel = base + drift[None, :] + bands + grain[None, :] + rng.normal(0, 3, (height, width))
    left, right = 0, width
    if rng.random() < 0.25:  # the plate ends inside the frame: dark beyond its edge
        edge = int(rng.uniform(0.1, 0.3) * width)
        left, right = (edge, width) if rng.random() < 0.5 else (0, width - edge)
        ramp = np.clip(np.minimum(x - left, right - 1 - x) / 6.0, 0.0, 1.0)
        steel = steel * ramp + (1 - ramp) * rng.uniform(10, 25)
    return steel.astype(np.float32), (left, right)


def _draw(kind: int, rng: np.random.Generator, size: tuple[int, int], span: tuple[int, int], s: float) -> Image.Image:
    """The mask (mode L, 0/255) of one defect class's marks on an image of `size` (height, width)."""
    height, width = size
    mask = Image.new("L", (width, height), 0)
    pen = ImageDraw.Draw(mask)
    left, right = span
    if kind == 1:  # pitting: clusters of small pits
        for _ in range(rng.integers(1, 4)):
            cx, cy = rng.uniform(left + 40 * s, right - 40 * s), rng.uniform(20 * s, height - 20 * s)
            for _ in range(rng.integers(5, 13)):
                px, py, r = cx + rng.normal(0, 22 * s), cy + rng.normal(0, 14 * s), rng.uniform(3, 7) * s
                pen.ellipse([px - r, py - r * 0.8, px + r, py + r * 0.8], fill=255)
    elif kind == 2:  # vertical scratches: thin bright lines across the strip
        for _ in range(rng.integers(1, 4)):
            x0, length = rng.uniform(left + 10 * s, right - 10 * s), rng.uniform(60, 200) * s
            y0 = rng.uniform(0, max(1.0, height - length))
            tilt, w = rng.uniform(-25, 25) * s, rng.uniform(4, 7) * s
            pen.line([(x0, y0), (x0 + tilt, y0 + length)], fill=255, width=max(1, round(w)))
    elif kind == 3:  # long streaks along the strip
        for _ in range(rng.integers(1, 3)):
            length = rng.uniform(200, 900) * s
            x0 = rng.uniform(left, max(left + 1.0, right - length))
            y0, thick = rng.uniform(15 * s, height - 15 * s), rng.uniform(8, 20) * s
            xs = np.linspace(x0, min(x0 + length, right - 1), 24)
            wave = y0 + np.cumsum(rng.normal(0, 1.5 * s, xs.size))
            top = [(float(a), float(b - thick / 2)) for a, b in zip(xs, wave, strict=True)]
            bottom = [(float(a), float(b + thick / 2)) for a, b in zip(xs[::-1], wave[::-1], strict=True)]
            pen.polygon(top + bottom, fill=255)
    else:  # blotches: large irregular dark patches
        for _ in range(rng.integers(1, 3)):
            cx, cy = rng.uniform(left + 60 * s, right - 60 * s), rng.uniform(30 * s, height - 30 * s)
            radius = rng.uniform(25, 55) * s
            angles = np.sort(rng.uniform(0, 2 * np.pi, rng.integers(12, 17)))
            radii = radius * rng.uniform(0.6, 1.15, angles.size)
            pen.polygon(
                [(cx + r * np.cos(a), cy + 0.7 * r * np.sin(a)) for a, r in zip(angles, radii, strict=True)], 255
            )
    return mask


SHADE = {1: -55.0, 2: 45.0, 3: -40.0, 4: -70.0}  # grey levels each kind adds to the steel


def render(rng: np.random.Generator, width: int, height: int) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """One strip: (RGB uint8 image (H, W, 3), {class 1..4: boolean mask} of the classes it holds)."""
    steel, span = _steel(rng, width, height)
    scale = height / 256.0
    count = rng.choice(len(KINDS), p=KINDS)
    kinds = sorted(rng.choice(np.arange(1, CLASSES + 1), size=count, replace=False, p=CLASS_WEIGHTS).tolist())
    masks = {}
    for kind in kinds:
        drawn = _draw(kind, rng, (height, width), span, scale)
        soft = np.asarray(drawn.filter(ImageFilter.GaussianBlur(1.2 * scale)), dtype=np.float32) / 255.0
        texture = 1.0 + 0.25 * rng.normal(0, 1, steel.shape).astype(np.float32)
        steel = steel + SHADE[kind] * soft * texture
        masks[kind] = np.asarray(drawn) > 127
    gray = np.clip(steel, 0, 255).astype(np.uint8)
    return np.repeat(gray[:, :, None], 3, axis=2), masks


def _jpeg(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _render_job(seed: int, split: int, index: int, width: int, height: int):
    rng = np.random.default_rng([seed, split, index])
    name = f"{int(rng.integers(16**9)):09x}.jpg"
    rgb, masks = render(rng, width, height)
    codes = {c: DIALECTS["severstal"].encode(m) for c, m in masks.items() if m.any()}
    return name, _jpeg(rgb), codes


def _csv_bytes(path: Path, header: tuple[str, ...], rows) -> bytes:
    write_csv(path, header, rows)
    return path.read_bytes()


def generate(
    out_dir: Path,
    truth_dir: Path,
    *,
    seed: int,
    train: int,
    test: int,
    width: int,
    height: int,
    multiclass: bool = False,
    jobs: int = -1,
) -> dict[str, int]:
    """Write `train` x 16 train strips and `test` x 16 test strips, and their files, into `out_dir`, and the test
    labels into `truth_dir`. The same arguments give byte-identical files; `multiclass` does not apply (Severstal's
    labels are always its four classes)."""
    from joblib import Parallel, delayed
    from tqdm import tqdm

    out_dir.mkdir(parents=True, exist_ok=True)
    truth_dir.mkdir(parents=True, exist_ok=True)
    todo = [(0, i) for i in range(train * PER_GROUP)] + [(1, i) for i in range(test * PER_GROUP)]
    results = Parallel(n_jobs=jobs, return_as="generator")(
        delayed(_render_job)(seed, split, i, width, height) for split, i in todo
    )
    labels: dict[int, list[tuple[str, str, str]]] = {0: [], 1: []}
    names: dict[int, list[str]] = {0: [], 1: []}
    seen: set[str] = set()
    tmp = out_dir / f".{ZIP}.tmp"
    with zipfile.ZipFile(tmp, "w") as archive:
        for (split, _), (name, jpeg, codes) in tqdm(
            zip(todo, results, strict=True), total=len(todo), desc="demo", unit="img"
        ):
            if name in seen:
                raise ValueError(f"demo seed {seed} draws the name {name} twice; choose another download.demo.seed")
            seen.add(name)
            write_member(archive, f"{(TRAIN_FOLDER, TEST_FOLDER)[split]}/{name}", jpeg)
            names[split].append(name)
            labels[split] += [(name, str(c), code) for c, code in sorted(codes.items())]
        train_rows = sorted(labels[0])
        sample = [(n, "1 1", str(c)) for n in sorted(names[1]) for c in range(1, CLASSES + 1)]
        write_member(
            archive, TRAIN_CSV, _csv_bytes(out_dir / TRAIN_CSV, ("ImageId", "ClassId", "EncodedPixels"), train_rows)
        )
        write_member(
            archive, SAMPLE_CSV, _csv_bytes(out_dir / SAMPLE_CSV, ("ImageId", "EncodedPixels", "ClassId"), sample)
        )
    tmp.replace(out_dir / ZIP)
    for name in (TRAIN_CSV, SAMPLE_CSV):  # extracted after the zip, as `unpack` leaves them
        (out_dir / name).touch()
    write_csv(truth_dir / TRUTH, ("ImageId", "ClassId", "EncodedPixels"), sorted(labels[1]))
    return {"train": len(names[0]), "test": len(names[1])}
