"""The competition folder (`data/raw`): which files it holds and the checks that make it trustworthy.

Every source (Kaggle, a local folder, the demo) ends in the same layout, Kaggle's own, with the
image zips kept as zips: `train.zip` (or `train_hq.zip`), `train_masks.zip`, `test.zip` (or
`test_hq.zip`), `train_masks.csv`, `sample_submission.csv` and, from Kaggle, `metadata.csv`.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from PIL import Image

from pipeline import rle
from pipeline.download.archive import ImageArchive
from pipeline.errors import UserError

CARVANA_SLUG = "carvana-image-masking-challenge"
CARVANA_COUNTS = {"train": 5088, "test": 100064}
CARVANA_NAME = re.compile(r"^[0-9a-f]{12}_(0[1-9]|1[0-6])\.jpg$")
MASK_NAME = re.compile(r"^(?P<stem>.+)_mask\.(gif|png)$")
TRAIN_MASKS_CSV = "train_masks.csv"
SAMPLE_SUBMISSION_CSV = "sample_submission.csv"
METADATA_CSV = "metadata.csv"
CSV_FILES = (TRAIN_MASKS_CSV, SAMPLE_SUBMISSION_CSV, METADATA_CSV)

CLASSES_FILE = "classes.json"  # written beside multi-class data: {"names": ["background", ...]}


class CompetitionError(UserError):
    """The competition folder is incomplete or inconsistent; the message lists what and the fix."""


def archive_names(hq: bool) -> dict[str, str]:
    """Names of the image zips for the train images, their masks and the test images."""
    return {
        "train": "train_hq.zip" if hq else "train.zip",
        "masks": "train_masks.zip",
        "test": "test_hq.zip" if hq else "test.zip",
    }


def kaggle_files(hq: bool) -> list[str]:
    """The files to fetch from Kaggle, as Kaggle names them (CSV files come zipped)."""
    return list(archive_names(hq).values()) + [f"{name}.zip" for name in CSV_FILES]


def stem(name: str) -> str:
    return name.rsplit(".", 1)[0]


@dataclass
class Competition:
    """Read access to a verified competition folder."""

    root: Path
    train: ImageArchive
    masks: ImageArchive
    test: ImageArchive
    mask_of: dict[str, str]  # image file name -> mask file name

    def content(self, names: list[str]) -> str:
        """A hash of the bytes (zip CRC-32 and size) of these train images and their masks."""
        masks = [self.mask_of.get(n, "") for n in names]
        return f"{self.train.content(names)}-{self.masks.content(masks)}"

    def read_mask(self, image_name: str) -> bytes:
        mask = self.mask_of.get(image_name)
        if mask is None:
            raise CompetitionError(
                f"{image_name} has no mask in {self.masks.path}; expected {stem(image_name)}_mask.gif"
            )
        return self.masks.read(mask)


def open_competition(root: Path, hq: bool) -> Competition:
    names = archive_names(hq)
    archives = {}
    for key, name in names.items():
        path = root / name
        if not path.is_file():
            raise CompetitionError(f"{path} is missing; run `dvc repro download` to fetch it")
        archives[key] = ImageArchive(path)
    mask_of = {}
    for mask_name in archives["masks"].names():
        match = MASK_NAME.match(mask_name)
        if match:
            mask_of[match["stem"]] = mask_name
    image_masks = {n: mask_of[stem(n)] for n in archives["train"].names() if stem(n) in mask_of}
    return Competition(root, archives["train"], archives["masks"], archives["test"], image_masks)


def read_csv(path: Path, columns: tuple[str, ...]) -> pd.DataFrame:
    """Read a competition CSV as strings, with a clear error for a missing file or column."""
    if not path.is_file():
        raise CompetitionError(f"{path} is missing; run `dvc repro download` to fetch it")
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise CompetitionError(f"{path} lacks the column {missing[0]!r}; its columns are {list(table.columns)}")
    return table


def image_size(comp: Competition, name: str) -> tuple[int, int]:
    """(height, width) of a train image, read from its header only."""
    with Image.open(io.BytesIO(comp.train.read(name))) as img:
        return img.height, img.width


def _diff(label_a: str, a: set, label_b: str, b: set, problems: list[str]) -> None:
    only = sorted(a - b)
    if only:
        problems.append(f"{len(only)} {label_a} not in {label_b}, e.g. {', '.join(only[:3])}")


def _carvana_problems(names: dict[str, str], train: set[str], test: set[str], mask_stems: set[str]) -> list[str]:
    """What makes a folder not the real Carvana data: its names and its counts."""
    problems = []
    odd = sorted(n for n in train | test if not CARVANA_NAME.match(n))
    if odd:
        problems.append(f"{len(odd)} file names are not Carvana's <12 hex>_<01..16>.jpg, e.g. {odd[0]}")
    for key, have in (("train", len(train)), ("test", len(test))):
        want = CARVANA_COUNTS[key]
        if have != want:
            problems.append(
                f"{names[key]} holds {have} images; Carvana has {want} (for a subset of the "
                f"data, set download.competition to another name)"
            )
    if len(mask_stems) != CARVANA_COUNTS["train"]:
        problems.append(f"{names['masks']} holds {len(mask_stems)} masks; Carvana has {CARVANA_COUNTS['train']}")
    return problems


def verify(root: Path, hq: bool, competition: str) -> dict[str, int]:
    """Check that the folder is complete and consistent; return its counts.

    Every train image has its mask and its train_masks.csv row (with a valid RLE), the sample
    submission lists exactly the test images, and for Carvana itself the names and the counts are
    the known ones. Raises CompetitionError listing every problem found.
    """
    comp = open_competition(root, hq)
    names = archive_names(hq)
    train_masks = read_csv(root / TRAIN_MASKS_CSV, ("img", "rle_mask"))
    sample = read_csv(root / SAMPLE_SUBMISSION_CSV, ("img", "rle_mask"))
    problems: list[str] = []

    train = set(comp.train.names())
    mask_stems = {MASK_NAME.match(n)["stem"] for n in comp.masks.names() if MASK_NAME.match(n)}
    _diff(f"images of {names['train']}", train, names["masks"], {n for n in train if stem(n) in mask_stems}, problems)
    _diff(f"masks of {names['masks']}", mask_stems, names["train"], {stem(n) for n in train}, problems)
    csv_names = set(train_masks["img"])
    _diff(f"images of {names['train']}", train, TRAIN_MASKS_CSV, csv_names, problems)
    _diff(f"rows of {TRAIN_MASKS_CSV}", csv_names, names["train"], train, problems)
    if train_masks["img"].duplicated().any():
        problems.append(f"{TRAIN_MASKS_CSV} lists {train_masks['img'][train_masks['img'].duplicated()].iloc[0]} twice")

    test = set(comp.test.names())
    listed = set(sample["img"])
    _diff(f"images of {names['test']}", test, SAMPLE_SUBMISSION_CSV, listed, problems)
    _diff(f"rows of {SAMPLE_SUBMISSION_CSV}", listed, names["test"], test, problems)
    if sample["img"].duplicated().any():
        problems.append(f"{SAMPLE_SUBMISSION_CSV} lists {sample['img'][sample['img'].duplicated()].iloc[0]} twice")

    if train:
        shape = image_size(comp, min(train))
        for name, code in zip(train_masks["img"], train_masks["rle_mask"], strict=True):
            try:
                rle.validate(code, shape)
            except rle.RLEError as err:
                problems.append(f"{TRAIN_MASKS_CSV}, row {name}: {err}")
                break

    if competition == CARVANA_SLUG:
        problems += _carvana_problems(names, train, test, mask_stems)

    if problems:
        raise CompetitionError(
            f"{root} is incomplete or inconsistent:\n  - "
            + "\n  - ".join(problems)
            + "\nA download: delete the files named above and run `dvc repro download` to fetch them again. A local "
            "folder: correct it, or for a subset of Carvana set download.competition to another name."
        )
    return {"train": len(train), "test": len(test)}
