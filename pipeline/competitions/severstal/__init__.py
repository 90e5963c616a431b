"""Severstal: Steel Defect Detection (`severstal-steel-defect-detection`).

Kaggle serves one zip of the whole competition, `severstal-steel-defect-detection.zip`: `train_images/` and
`test_images/` (1600x256 JPEGs of grey steel, stored as RGB), `train.csv` and `sample_submission.csv`. The images
are read from inside the zip; the two CSV files are extracted beside it. Four defect classes that may share an
image (so one sigmoid channel per class, the labels a bit mask per image: bit c is class c + 1), labelled by
column-major, 1-indexed runs. Kaggle changed the CSV layout once during the competition, and both are read: first
`ImageId_ClassId,EncodedPixels` with four rows per image (`0002cc93b.jpg_1`), then `ImageId,ClassId,EncodedPixels`
with only the defects in train.csv. The submission copies whatever the sample submission has: its header, its
rows, their order. The score is the mean Dice over every (image, class) pair, 1 where both masks are empty, so the
leaders chose per class a threshold and a minimum object area below which a mask is dropped.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import posixpath
import zipfile
from collections.abc import Collection
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.competitions.archive import ImageArchive, extract_member, open_zip, write_member
from pipeline.competitions.base import (
    Competition,
    CompetitionError,
    KernelLimits,
    SubmissionFormat,
    diff,
    raise_problems,
    read_csv,
    write_csv,
)
from pipeline.images import ImageError, Size, image_size
from pipeline.masks.postprocess import Rule
from pipeline.masks.rle import DIALECTS, RLEError, area

SLUG = "severstal-steel-defect-detection"
ZIP = f"{SLUG}.zip"
TRAIN_CSV, SAMPLE_CSV = "train.csv", "sample_submission.csv"
TRAIN_FOLDER, TEST_FOLDER = "train_images", "test_images"
CLASSES = 4
CLASS_NAMES = [f"class_{c}" for c in range(1, CLASSES + 1)]
NEW_COLUMNS = ("ImageId", "ClassId", "EncodedPixels")  # the layout Kaggle serves today
OLD_ID = "ImageId_ClassId"  # the layout of the competition's first weeks: <image>_<class>
VALUE = "EncodedPixels"


def read_labels(path: Path) -> dict[str, dict[int, str]]:
    """{image: {class 1..4: run-length text}} of a train.csv in either layout; empty texts are left out."""
    table = read_csv(path)
    if OLD_ID in table.columns and VALUE in table.columns:
        image, cls = table[OLD_ID].str.rsplit("_", n=1).str[0], table[OLD_ID].str.rsplit("_", n=1).str[1]
    elif set(NEW_COLUMNS) <= set(table.columns):
        image, cls = table["ImageId"], table["ClassId"]
    else:
        raise CompetitionError(
            f"{path} has the columns {list(table.columns)}; Severstal's are {','.join(NEW_COLUMNS)} (or "
            f"{OLD_ID},{VALUE})"
        )
    labels: dict[str, dict[int, str]] = {}
    first: dict[tuple[str, int], int] = {}
    for row, (name, c, code) in enumerate(zip(image, cls, table[VALUE], strict=True), start=2):
        if not str(c).isdigit() or not 1 <= int(c) <= CLASSES:
            raise CompetitionError(f"{path}, row {name}: class {c!r} is not one of 1..{CLASSES}")
        if (name, int(c)) in first:  # Severstal gives one row per (image, class): a second would replace the first
            raise CompetitionError(
                f"{path}: {name} class {c} is on lines {first[name, int(c)]} and {row}; Severstal's train.csv has one "
                f"row per image and class: keep one (the runs of both, merged, if both are right)"
            )
        first[name, int(c)] = row
        if code.strip():
            labels.setdefault(name, {})[int(c)] = code
    return labels


def sample_format(path: Path) -> SubmissionFormat:
    """The sample submission's header and rows, grouped by image in its order, for either layout."""
    table = read_csv(path)
    columns = tuple(table.columns)
    if VALUE not in columns:
        raise CompetitionError(f"{path} has no {VALUE} column (its columns: {list(columns)})")
    if OLD_ID in columns:
        parts = table[OLD_ID].str.rsplit("_", n=1)
        images, classes = parts.str[0], parts.str[1]
    elif "ImageId" in columns and "ClassId" in columns:
        images, classes = table["ImageId"], table["ClassId"]
    else:
        raise CompetitionError(f"{path} has neither {OLD_ID} nor ImageId and ClassId columns: {list(columns)}")
    value = columns.index(VALUE)
    order: list[str] = []
    rows: dict[str, list] = {}
    for fields, name, c in zip(table.itertuples(index=False, name=None), images, classes, strict=True):
        if not str(c).isdigit() or not 1 <= int(c) <= CLASSES:
            raise CompetitionError(f"{path}, row {name}: class {c!r} is not one of 1..{CLASSES}")
        if name not in rows:
            order.append(name)
            rows[name] = []
        elif order[-1] != name:
            raise CompetitionError(f"{path} lists {name} in two places; the rows of an image must be together")
        rows[name].append((int(c) - 1, tuple(str(f) for f in fields)))
    return SubmissionFormat(columns, value, tuple(order), tuple(tuple(rows[n]) for n in order))


class Severstal(Competition):
    slug = SLUG
    title = "Severstal: Steel Defect Detection"
    native_size = (256, 1600)
    kaggle_counts = (12_568, 5_506)  # the test set of the competition's second stage
    kaggle_outputs = 4
    group = "image"
    dialect = DIALECTS["severstal"]
    labels = "multilabel"
    # A code competition: "Synchronous kernel-only competition. No internet; 1 hour run-time; 30 hours/week with GPU"
    # (the 12th place's slides, bamps53/kaggle-severstal); the hidden test set replaced test_images/.
    submission_way = "kernel"
    kernel_limits = KernelLimits(cpu_hours=1, gpu_hours=1)
    kernel_test = (TEST_FOLDER,)

    def __init__(self, root: Path, hq: bool = False, strict: bool = False):
        super().__init__(root, hq, strict)
        path = self.root / ZIP
        if not path.is_file():
            raise CompetitionError(f"{path} is missing; run `dvc repro download` to fetch it")
        self.train, self.test = ImageArchive(path, TRAIN_FOLDER), ImageArchive(path, TEST_FOLDER)
        self.class_names = list(CLASS_NAMES)
        self.train_names = self.train.names()
        self._labels: dict[str, dict[int, str]] | None = None
        self._format: SubmissionFormat | None = None

    @property
    def labels_of(self) -> dict[str, dict[int, str]]:
        if self._labels is None:
            self._labels = read_labels(self.root / TRAIN_CSV)
        return self._labels

    # ---- files
    @classmethod
    def kaggle_files(cls, hq: bool) -> list[str]:
        return [ZIP]  # what `kaggle competitions download -c severstal-steel-defect-detection` fetches

    @classmethod
    def unpack(cls, root: Path, provided: Collection[str] = ()) -> None:
        """Extract the CSV files the zip holds (Kaggle's one download), but for those the source gave beside it."""
        with open_zip(root / ZIP) as z:
            inside = {posixpath.basename(n) for n in z.namelist()}
        for name in (TRAIN_CSV, SAMPLE_CSV):
            if name in inside and name not in provided:
                extract_member(root / ZIP, name, root / name)

    @classmethod
    def layout(cls, hq: bool) -> tuple[dict[str, tuple[str, ...]], tuple[str, ...], tuple[str, ...]]:
        return {ZIP: (TRAIN_FOLDER, TEST_FOLDER)}, (TRAIN_CSV, SAMPLE_CSV), ()

    @classmethod
    def write(cls, out: Path, train, test, binary: bool, classes_at_least: int = 2) -> None:
        """The competition zip (train_images/, test_images/) and train.csv / sample_submission.csv in today's
        layout: class k of an index mask is ClassId k (binary masks: class 1), column-major runs."""
        out.mkdir(parents=True, exist_ok=True)
        rows, names = [], []
        part = out / f".{ZIP}.part"
        with zipfile.ZipFile(part, "w") as archive:
            for name, data, index in train:
                if int(index.max()) > CLASSES:
                    raise CompetitionError(
                        f"{name}: its mask holds class {int(index.max())}; Severstal has 1..{CLASSES}"
                    )
                write_member(archive, f"{TRAIN_FOLDER}/{name}", data)
                rows += [
                    (name, str(c), cls.dialect.encode(index == c)) for c in range(1, CLASSES + 1) if (index == c).any()
                ]
            for name, data in test:
                write_member(archive, f"{TEST_FOLDER}/{name}", data)
                names.append(name)
        part.replace(out / ZIP)
        write_csv(out / TRAIN_CSV, NEW_COLUMNS, rows)
        write_csv(
            out / SAMPLE_CSV, ("ImageId", VALUE, "ClassId"), [(n, "1 1", str(c)) for n in names for c in range(1, 5)]
        )

    def verify(self) -> dict[str, int]:
        """Every labelled image is in train_images/, every label a valid column-major RLE of its image, and the
        sample submission lists every test image (each with its four classes) and nothing else."""
        problems: list[str] = []
        train, test = set(self.train_names), set(self.test.names())
        if not train:
            problems.append(f"{ZIP} holds no {TRAIN_FOLDER}/ images")
        labels = self.labels_of
        diff(f"images of {TRAIN_CSV}", set(labels), f"{ZIP}/{TRAIN_FOLDER}", train, problems)
        if train:
            shape = image_size(self.train.read(min(train)), min(train))
            problems += self._other_sizes(sorted(train), shape)
            problems += self._bad_rows(labels, shape)
        sample = self.submission()
        listed = set(sample.images)
        diff(f"images of {ZIP}/{TEST_FOLDER}", test, SAMPLE_CSV, listed, problems)
        diff(f"images of {SAMPLE_CSV}", listed, f"{ZIP}/{TEST_FOLDER}", test, problems)
        twice = [n for n, rows in zip(sample.images, sample.rows, strict=True) if len({c for c, _ in rows}) < len(rows)]
        if twice:
            problems.append(f"{SAMPLE_CSV} lists a class of {twice[0]} twice")
        raise_problems(self.root, problems)
        return {"train": len(train), "test": len(test)}

    def _other_sizes(self, names: list[str], shape: Size) -> list[str]:
        """A train image of another size than the first (its runs would be read against pixels it does not have), or
        one an EXIF orientation turns (its runs could be of the image as shown)."""
        for name in names:
            try:
                size = image_size(self.train.read(name), name, upright=True)
            except ImageError as err:
                return [f"{ZIP}: {err}"]
            if size != shape:
                return [
                    f"{ZIP}: {TRAIN_FOLDER}/{name} is {size[1]}x{size[0]}, the other images {shape[1]}x{shape[0]} "
                    f"(width x height); Severstal's labels are runs over one size: remove it, or its labels, from "
                    f"the zip and {TRAIN_CSV}"
                ]
        return []

    @classmethod
    def _bad_rows(cls, labels: dict[str, dict[int, str]], shape: Size) -> list[str]:
        for name, per_class in labels.items():
            for c, code in per_class.items():
                try:
                    cls.dialect.pairs(code, shape)
                except RLEError as err:
                    return [f"{TRAIN_CSV}, row {name} class {c}: {err}"]
        return []

    # ---- reading
    @property
    def test_names(self) -> list[str]:
        return list(self.submission().images)

    def read_image(self, name: str) -> bytes:
        return self.train.read(name)

    def read_test(self, name: str) -> bytes:
        return self.test.read(name)

    def read_mask(self, name: str, expected: Size | None = None) -> np.ndarray:
        """Bit mask (H, W): bit c set where class c + 1 is, decoded column-major at the image's size."""
        shape = expected or image_size(self.train.read(name), name)
        mask = np.zeros(shape, dtype=np.uint8)
        for c, code in self.labels_of.get(name, {}).items():
            try:
                mask |= self.dialect.decode(code, shape) << np.uint8(c - 1)
            except RLEError as err:
                raise CompetitionError(f"{self.root / TRAIN_CSV}, row {name} class {c}: {err}") from None
        return mask

    def mask_areas(self, names: list[str]) -> np.ndarray:
        h, w = image_size(self.train.read(names[0]), names[0])
        labels = self.labels_of
        return np.array([sum(area(c) for c in labels.get(n, {}).values()) / (h * w) for n in names])

    def content(self, names: list[str]) -> str:
        labels = self.labels_of
        rows = hashlib.sha256(repr([(n, sorted(labels.get(n, {}).items())) for n in names]).encode()).hexdigest()
        return f"{self.train.content(names)}-{rows[:16]}"

    # ---- submission and metric
    @classmethod
    def submission_format(cls, root: Path) -> SubmissionFormat:
        return sample_format(root / SAMPLE_CSV)

    def submission(self) -> SubmissionFormat:
        if self._format is None:
            self._format = self.submission_format(self.root)
        return self._format

    @staticmethod
    def masks(probs: np.ndarray, size: Size, rules: list[Rule], classes: list[int]) -> dict[int, np.ndarray]:
        return {c: rules[c].apply(probs[c], size) for c in classes}

    @staticmethod
    def texts(probs: np.ndarray, size: Size, rules: list[Rule], classes: list[int]) -> dict[int, str]:
        masks = Severstal.masks(probs, size, rules, classes)
        return {c: Severstal.dialect.encode(m) for c, m in masks.items()}

    def scoreboard(self, areas: bool = False):
        from pipeline.masks.scoring import PairScoreboard  # torch, which encode's workers do without

        return PairScoreboard(CLASSES, areas)

    @classmethod
    def score(cls, submission: Path, truth: Path, size: Size) -> float:
        """Mean Dice over the submission's (image, class) pairs, decoded column-major, against truth in train.csv's
        layout (pairs it does not list are empty); 1 where both masks are empty."""
        from pipeline.masks.scoring import dice

        sub = _pairs(submission)
        want = read_labels(truth)
        missing = [(n, c) for n, per_class in want.items() for c in per_class if (n, c) not in sub]
        if missing:
            raise CompetitionError(f"{submission} lacks the row of {missing[0][0]} class {missing[0][1]}")
        scores = [
            dice(cls.dialect.decode(code, size), cls.dialect.decode(want.get(n, {}).get(c, ""), size))
            for (n, c), code in sub.items()
        ]
        return float(np.mean(scores))


def _pairs(path: Path) -> dict[tuple[str, int], str]:
    """{(image, class 1..4): text} of a submission file (gzip or plain) in either layout."""
    data = Path(path).read_bytes()
    text = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
    table = pd.read_csv(io.BytesIO(text), dtype=str, keep_default_na=False)
    if OLD_ID in table.columns:
        parts = table[OLD_ID].str.rsplit("_", n=1)
        keys = zip(parts.str[0], parts.str[1].astype(int), strict=True)
    elif "ImageId" in table.columns and "ClassId" in table.columns:
        keys = zip(table["ImageId"], table["ClassId"].astype(int), strict=True)
    else:
        raise CompetitionError(f"{path} has neither {OLD_ID} nor ImageId and ClassId columns")
    return dict(zip(keys, table[VALUE], strict=True))
