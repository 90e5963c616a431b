"""What a competition is to the pipeline, in one class per competition: the files Kaggle serves and their checks,
how images and labels are read, the submission rows and their run-length dialect, the metric, and the folds.

The competition's own files are the on-disk format of data/raw (images stay inside their zips); every stage opens
the folder through its competition's class, so nothing outside the competition modules knows a file name.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd

from pipeline.errors import UserError
from pipeline.images import Size
from pipeline.masks.postprocess import Rule
from pipeline.masks.rle import Dialect

PREFIX = re.compile(r"^(?P<prefix>.+)_(?P<index>\d{2})$")  # <prefix>_<NN>: views of one object (Carvana's 16 of a car)


class CompetitionError(UserError):
    """The competition folder is incomplete or inconsistent; the message lists what and the fix."""


def stem(name: str) -> str:
    return name.rsplit(".", 1)[0]


def read_csv(path: Path, columns: tuple[str, ...] = ()) -> pd.DataFrame:
    """Read a competition CSV as strings, with a clear error for a missing file or column."""
    if not path.is_file():
        raise CompetitionError(f"{path} is missing; run `dvc repro download` to fetch it")
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
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
    def unpack(cls, root: Path) -> None:
        """After a download or a copy: extract from the fetched files what is read unzipped (the CSV files)."""

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
