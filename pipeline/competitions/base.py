"""What a competition is to the pipeline, in one class per competition: the files Kaggle serves and their checks,
how images and labels are read, the submission rows and their run-length dialect, the metric, and the folds.

The competition's own files are the on-disk format of data/raw (images stay inside their zips); every stage opens
the folder through its competition's class, so nothing outside the competition modules knows a file name.
"""

from __future__ import annotations

import csv
import re
import zipfile
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd

from pipeline.competitions.archive import ImageArchive, ImageFolder, extract_member, write_member
from pipeline.errors import UserError
from pipeline.images import Size
from pipeline.masks.postprocess import Rule
from pipeline.masks.rle import Dialect

PREFIX = re.compile(r"^(?P<prefix>.+)_(?P<index>\d{2})$")  # <prefix>_<NN>: views of one object (Carvana's 16 of a car)


class CompetitionError(UserError):
    """The competition folder is incomplete or inconsistent; the message lists what and the fix."""


@dataclass(frozen=True)
class KernelLimits:
    """The limits a code competition puts on the kernel that Kaggle reruns on the hidden test set: hours of run time
    on a CPU and on a GPU, the internet always off."""

    cpu_hours: float
    gpu_hours: float


# Kaggle's limit on any notebook session, for `submit.via: kernel` in a competition that takes files: "12 hours of
# execution time for CPU and GPU notebook sessions" (kaggle.com/docs/notebooks, Technical specifications).
NOTEBOOK_SESSION = KernelLimits(cpu_hours=12, gpu_hours=12)


def stem(name: str) -> str:
    return name.rsplit(".", 1)[0]


def read_csv(path: Path, columns: tuple[str, ...] = ()) -> pd.DataFrame:
    """Read a competition CSV as strings, with a clear error for a missing file or column."""
    if not path.is_file():
        raise CompetitionError(f"{path} is missing; run `dvc repro download` to fetch it")
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as err:
        what = "is empty (0 bytes)" if path.stat().st_size == 0 else f"is not a CSV file ({str(err).splitlines()[0]})"
        raise CompetitionError(
            f"{path} {what}: put the competition's own file there (delete data/raw and run `dvc repro download`, or "
            f"replace it in download.local.path)"
        ) from None
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise CompetitionError(f"{path} lacks the column {missing[0]!r}; its columns are {list(table.columns)}")
    return table


def write_csv(path: Path, header: tuple[str, ...], rows) -> None:
    """A CSV file as Kaggle writes them; a value with a comma, quote or line break is quoted."""
    with path.open("w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def _quoted(field: str) -> str:
    return '"' + field.replace('"', '""') + '"' if any(c in field for c in ',"\r\n') else field


def csv_line(fields: tuple[str, ...] | list[str]) -> str:
    """One CSV line, quoted as `write_csv` quotes (a name with a comma, quote or line break)."""
    return ",".join(_quoted(f) for f in fields) + "\n"


def diff(label_a: str, a: set, label_b: str, b: set, problems: list[str]) -> None:
    """Add a problem when `a` holds names that `b` lacks."""
    only = sorted(a - b)
    if only:
        problems.append(f"{len(only)} {label_a} not in {label_b}, e.g. {', '.join(only[:3])}")


def raise_problems(root: Path, problems: list[str], fix: str = "") -> None:
    if problems:
        raise CompetitionError(
            f"{root} is incomplete or inconsistent:\n  - "
            + "\n  - ".join(problems)
            + "\nA download: delete the files named above and run `dvc repro download` to fetch them again. A local "
            "folder: correct it" + (f"; {fix}" if fix else "") + "."
        )


@dataclass(frozen=True)
class SubmissionFormat:
    """A sample submission read for writing: its header, and per test image (in the sample's order) its rows, each
    the fields of that row with the index of the output class whose mask fills the value column."""

    columns: tuple[str, ...]
    value: int  # the column that holds the run-length text
    images: tuple[str, ...]
    rows: tuple[tuple[tuple[int, tuple[str, ...]], ...], ...]  # per image: (class index, fields) per row

    @property
    def header(self) -> str:
        return csv_line(self.columns)

    def lines(self, image: int, texts: dict[int, str]) -> list[str]:
        """The CSV lines of the image at position `image`, its masks' texts filled in."""
        out = []
        for cls, fields in self.rows[image]:
            row = list(fields)
            row[self.value] = texts[cls]
            out.append(csv_line(row))
        return out

    def classes(self, image: int) -> list[int]:
        return [cls for cls, _ in self.rows[image]]


class Competition:
    """One competition's folder, opened for reading; subclasses say everything that differs between competitions.

    `strict` (a local copy imported as the competition itself) adds the checks that hold only for the real data:
    its file names and counts.
    """

    slug: ClassVar[str] = ""
    title: ClassVar[str] = ""
    native_size: ClassVar[Size] = (0, 0)  # (height, width) of the real images: the demo's default size
    kaggle_counts: ClassVar[tuple[int, int]] = (0, 0)  # the real competition's train and test images (budget)
    kaggle_outputs: ClassVar[int] = 1  # a model's outputs for the real competition (budget)
    group: ClassVar[str] = "image"  # what split.group auto means: prefix (the name before _<NN>) or image
    unit: ClassVar[str] = "prefix group"  # what a prefix group is called in messages (Carvana: car)
    dialect: ClassVar[Dialect]
    labels: str = "binary"  # binary (one sigmoid) | multiclass (softmax over classes) | multilabel (one sigmoid each)
    class_names: list[str]
    submission_way: ClassVar[str] = "file"  # how Kaggle takes submissions: file (an uploaded CSV) | kernel (a rerun)
    kernel_limits: ClassVar[KernelLimits] = NOTEBOOK_SESSION
    kernel_test: ClassVar[tuple[str, ...]] = ("test_images", "test", "test.zip")  # where a kernel finds the test set

    def __init__(self, root: Path, hq: bool = False, strict: bool = False):
        self.root, self.hq, self.strict = Path(root), hq, strict

    @classmethod
    def demo_outputs(cls, multiclass: bool) -> int:
        """A model's outputs for the competition's demo (budget, before the demo is rendered)."""
        return cls.kaggle_outputs

    # ---- files
    @classmethod
    def kaggle_files(cls, hq: bool) -> list[str]:
        """The files to fetch from Kaggle, as Kaggle names them."""
        raise NotImplementedError

    @classmethod
    def unpack(cls, root: Path, provided: Collection[str] = ()) -> None:
        """After a download or a copy: extract from the fetched files what is read unzipped (the CSV files), but
        for the files named in `provided`, which the source gave unzipped. What a zip holds replaces the file of
        its name unless the bytes are the same: never kept for its date."""

    @classmethod
    def layout(cls, hq: bool) -> tuple[dict[str, tuple[str, ...]], tuple[str, ...], tuple[str, ...]]:
        """The files of a local copy of Kaggle's data: ({zip: the folders it holds when extracted}, required CSV
        files, optional CSV files)."""
        raise NotImplementedError

    @classmethod
    def write(cls, out: Path, train, test, binary: bool, classes_at_least: int = 2) -> None:
        """Write imported data as this competition's files: `train` yields (name, image bytes, (H, W) uint8 class
        indices), `test` (name, image bytes); `binary` masks hold 0/1."""
        raise NotImplementedError

    def verify(self) -> dict[str, int]:
        """Check that the folder is complete and consistent; {'train': images, 'test': images}, or
        CompetitionError listing every problem found."""
        raise NotImplementedError

    # ---- reading
    train_names: list[str]  # the labelled images, in the order of the competition's label file
    test_names: list[str]  # in the sample submission's order

    def read_image(self, name: str) -> bytes:
        raise NotImplementedError

    def read_test(self, name: str) -> bytes:
        raise NotImplementedError

    def read_mask(self, name: str, expected: Size | None = None) -> np.ndarray:
        """(H, W) uint8 labels of a train image: 0/1, class indices, or bit masks (multilabel)."""
        raise NotImplementedError

    def mask_areas(self, names: list[str]) -> np.ndarray:
        """Fraction of each image its labels cover (all classes together), from the label files alone."""
        raise NotImplementedError

    def content(self, names: list[str]) -> str:
        """A hash of the bytes of these train images and their labels (zip CRC-32 and sizes, label rows)."""
        raise NotImplementedError

    @property
    def channels(self) -> int:
        """Model outputs: one for two classes, else one per class (softmax) or per defect class (sigmoid)."""
        if self.labels == "binary":
            return 1
        return len(self.class_names)

    # ---- folds
    def group_of(self, name: str, group: str) -> str:
        """The group an image belongs to for the folds: its name prefix (`<prefix>_<NN>.<ext>`: Carvana's car), or
        the image itself."""
        base = stem(name)
        if group == "auto":
            group = self.group
        if group == "image":
            return base
        match = PREFIX.match(base)
        if not match:
            raise CompetitionError(
                f"{name} is not named <prefix>_<NN>.<ext>, so it cannot be grouped by prefix; "
                f"set split.group to 'image' (or 'auto') for images that are not views of one object"
            )
        return match["prefix"]

    # ---- submission and metric
    SAMPLE: ClassVar[str] = "sample_submission.csv"

    @classmethod
    def submission_format(cls, root: Path) -> SubmissionFormat:
        """The sample submission's header and rows (it alone is read: encode depends on nothing else)."""
        raise NotImplementedError

    def submission(self) -> SubmissionFormat:
        return self.submission_format(self.root)

    @classmethod
    def write_kernel_inputs(cls, root: Path, fmt: SubmissionFormat, images: dict[str, bytes], place: str | None = None):
        """The competition as Kaggle mounts it in a kernel, with these test images (in `place`, the first of
        `kernel_test` by default: a folder, or a zip like Kaggle's) and the sample submission of `fmt`: what package
        tries a bundle on, and the tests' hidden test sets."""
        place = place or cls.kernel_test[0]
        root.mkdir(parents=True, exist_ok=True)
        if place.endswith(".zip"):
            with zipfile.ZipFile(root / place, "w") as z:
                for name, data in images.items():
                    write_member(z, f"{place[: -len('.zip')]}/{name}", data)
        else:
            (root / place).mkdir(parents=True, exist_ok=True)
            for name, data in images.items():
                (root / place / name).write_bytes(data)
        write_csv(root / cls.SAMPLE, fmt.columns, [fields for rows in fmt.rows for _, fields in rows])

    @classmethod
    def kernel_inputs(cls, root: Path, work: Path) -> tuple[ImageArchive | ImageFolder, SubmissionFormat]:
        """The test set as Kaggle mounts the competition in a kernel (`root` = /kaggle/input/<slug>): the first of
        `kernel_test` (a folder of images, or a zip of them) and the sample submission that lists the images to
        predict, as a CSV or zipped as Kaggle serves it (extracted into `work`)."""
        sample = root / cls.SAMPLE
        if not sample.is_file() and (root / f"{cls.SAMPLE}.zip").is_file():
            work.mkdir(parents=True, exist_ok=True)
            sample = extract_member(root / f"{cls.SAMPLE}.zip", cls.SAMPLE, work / cls.SAMPLE)
        if not sample.is_file():
            raise CompetitionError(f"{root} has no {cls.SAMPLE}: is the competition {cls.slug} added to the kernel?")
        fmt = cls.submission_format(sample.parent)
        for place in cls.kernel_test:
            path = root / place
            if path.is_dir():
                return ImageFolder(path), fmt
            if path.is_file():
                return ImageArchive(path), fmt
        raise CompetitionError(f"{root} holds none of {', '.join(cls.kernel_test)}: where are the test images?")

    @staticmethod
    def texts(probs: np.ndarray, size: Size, rules: list[Rule], classes: list[int]) -> dict[int, str]:
        """The run-length text of each needed class's mask from uint8 probabilities (C, h, w) at the model size."""
        raise NotImplementedError

    @staticmethod
    def masks(probs: np.ndarray, size: Size, rules: list[Rule], classes: list[int]) -> dict[int, np.ndarray]:
        """The same masks, made whole by the plain path: what encode's self-check compares its rows against."""
        raise NotImplementedError

    def scoreboard(self, areas: bool = False):
        """An accumulator of the competition's metric on validation images (masks.scoring)."""
        raise NotImplementedError

    @classmethod
    def score(cls, submission: Path, truth: Path) -> float:
        """Kaggle's score of a submission file against a truth file in the competition's label format."""
        raise NotImplementedError
