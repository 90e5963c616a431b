"""Carvana Image Masking Challenge (`carvana-image-masking-challenge`), and the same file layout for any other
binary or multi-class dataset (a slug this package does not know, a local import, the ISBI slices).

Files as Kaggle serves them, the image zips kept as zips: `train.zip` (or `train_hq.zip`), `train_masks.zip`
(`<id>_<NN>_mask.gif`, 0/1), `test.zip` (or `test_hq.zip`), `train_masks.csv`, `sample_submission.csv` and
`metadata.csv`; multi-class data adds `classes.json`. One row per test image, `img,rle_mask`, row-major 1-indexed
runs; the score is the mean per-image Dice of the car, 1 where both masks are empty. Folds group the 16 views of
a car.
"""

from __future__ import annotations

import gzip
import io
import json
import re
import zipfile
from collections.abc import Collection
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from pipeline.competitions.archive import ImageArchive, extract_member, write_member
from pipeline.competitions.base import (
    PREFIX,
    Competition,
    CompetitionError,
    SubmissionFormat,
    diff,
    raise_problems,
    read_csv,
    stem,
    write_csv,
)
from pipeline.images import ImageError, Size, decode_mask, image_size
from pipeline.masks import postprocess
from pipeline.masks.postprocess import Rule
from pipeline.masks.rle import DIALECTS, RLEError, area, encode

SLUG = "carvana-image-masking-challenge"
COUNTS = {"train": 5088, "test": 100064}
NAME = re.compile(r"^[0-9a-f]{12}_(0[1-9]|1[0-6])\.jpg$")
MASK_NAME = re.compile(r"^(?P<stem>.+)_mask\.(gif|png)$")
TRAIN_MASKS_CSV = "train_masks.csv"
SAMPLE_SUBMISSION_CSV = "sample_submission.csv"
METADATA_CSV = "metadata.csv"
CSV_FILES = (TRAIN_MASKS_CSV, SAMPLE_SUBMISSION_CSV, METADATA_CSV)
COLUMNS = ("img", "rle_mask")
DEMO_PARTS = ("background", "body", "windows", "wheels", "lights")  # index masks of the multi-class demo
CLASSES_FILE = "classes.json"  # written beside multi-class data: {"names": ["background", ...]}


def archive_names(hq: bool) -> dict[str, str]:
    """Names of the image zips for the train images, their masks and the test images."""
    return {
        "train": "train_hq.zip" if hq else "train.zip",
        "masks": "train_masks.zip",
        "test": "test_hq.zip" if hq else "test.zip",
    }


def class_names(root: Path) -> list[str]:
    """The data's classes: from classes.json when the masks are multi-class, else background and car."""
    path = root / CLASSES_FILE
    if path.is_file():
        return list(json.loads(path.read_text())["names"])
    return ["background", "car"]


class Carvana(Competition):
    slug = SLUG
    title = "Carvana Image Masking Challenge"
    native_size = (1280, 1918)
    kaggle_counts = (5088, 100_064)
    group = "prefix"
    unit = "car"
    kernel_test = ("test", "test.zip", "test_hq", "test_hq.zip")  # Carvana: the zips Kaggle serves, or their folders
    dialect = DIALECTS["carvana"]

    def __init__(self, root: Path, hq: bool = False, strict: bool = False):
        super().__init__(root, hq, strict)
        archives = {}
        for key, name in archive_names(hq).items():
            path = self.root / name
            if not path.is_file():
                raise CompetitionError(f"{path} is missing; run `dvc repro download` to fetch it")
            archives[key] = ImageArchive(path)
        self.train, self.mask_zip, self.test = archives["train"], archives["masks"], archives["test"]
        stems = {m["stem"]: name for name in self.mask_zip.names() if (m := MASK_NAME.match(name))}
        self.mask_of = {n: stems[stem(n)] for n in self.train.names() if stem(n) in stems}
        self.class_names = class_names(self.root)
        self.labels = "binary" if len(self.class_names) == 2 else "multiclass"
        self._train_names: list[str] | None = None
        self._test_names: list[str] | None = None

    @classmethod
    def demo_outputs(cls, multiclass: bool) -> int:
        return len(DEMO_PARTS) if multiclass else 1

    # ---- files
    @classmethod
    def kaggle_files(cls, hq: bool) -> list[str]:
        return list(archive_names(hq).values()) + [f"{name}.zip" for name in CSV_FILES]

    @classmethod
    def unpack(cls, root: Path, provided: Collection[str] = ()) -> None:
        """Kaggle serves the CSV files zipped; extract each next to its zip, safely."""
        for name in CSV_FILES:
            if name not in provided and (root / f"{name}.zip").is_file():
                extract_member(root / f"{name}.zip", name, root / name)

    @classmethod
    def layout(cls, hq: bool) -> tuple[dict[str, tuple[str, ...]], tuple[str, ...], tuple[str, ...]]:
        zips = {name: (name[: -len(".zip")],) for name in archive_names(hq).values()}
        return zips, (TRAIN_MASKS_CSV, SAMPLE_SUBMISSION_CSV), (METADATA_CSV,)

    @classmethod
    def write(cls, out: Path, train, test, binary: bool, classes_at_least: int = 2) -> None:
        """train.zip, train_masks.zip (class-index PNGs), test.zip and the two CSV files; classes.json when the
        masks are not binary."""
        rows, top = [], 0
        out.mkdir(parents=True, exist_ok=True)
        parts = {n: out / f".{n}.part" for n in ("train.zip", "train_masks.zip", "test.zip")}
        with (
            zipfile.ZipFile(parts["train.zip"], "w") as z_img,
            zipfile.ZipFile(parts["train_masks.zip"], "w") as z_mask,
        ):
            for name, data, index in train:
                top = max(top, int(index.max()))
                buf = io.BytesIO()
                Image.fromarray(index).save(buf, format="PNG")
                write_member(z_img, f"train/{name}", data)
                write_member(z_mask, f"train_masks/{stem(name)}_mask.png", buf.getvalue())
                rows.append((name, encode(index > 0)))
        with zipfile.ZipFile(parts["test.zip"], "w") as z_test:
            names = []
            for name, data in test:
                write_member(z_test, f"test/{name}", data)
                names.append(name)
        for name, part in parts.items():
            part.replace(out / name)
        write_csv(out / TRAIN_MASKS_CSV, COLUMNS, rows)
        write_csv(out / SAMPLE_SUBMISSION_CSV, COLUMNS, [(n, "1 1") for n in names])
        classes = out / CLASSES_FILE
        if binary:
            classes.unlink(missing_ok=True)
        else:
            count = max(top + 1, classes_at_least, 2)
            classes.write_text(json.dumps({"names": ["background"] + [f"class_{k}" for k in range(1, count)]}) + "\n")

    def verify(self) -> dict[str, int]:
        """Every train image has its mask and its train_masks.csv row (with a valid RLE), the sample submission
        lists exactly the test images, and for Carvana itself the names and the counts are the known ones."""
        names = archive_names(self.hq)
        train_masks = read_csv(self.root / TRAIN_MASKS_CSV, COLUMNS)
        sample = read_csv(self.root / SAMPLE_SUBMISSION_CSV, COLUMNS)
        problems: list[str] = []

        train = set(self.train.names())
        mask_stems = {m["stem"] for n in self.mask_zip.names() if (m := MASK_NAME.match(n))}
        diff(f"images of {names['train']}", train, names["masks"], set(self.mask_of), problems)
        diff(f"masks of {names['masks']}", mask_stems, names["train"], {stem(n) for n in train}, problems)
        csv_names = set(train_masks["img"])
        diff(f"images of {names['train']}", train, TRAIN_MASKS_CSV, csv_names, problems)
        diff(f"rows of {TRAIN_MASKS_CSV}", csv_names, names["train"], train, problems)
        if train_masks["img"].duplicated().any():
            problems.append(
                f"{TRAIN_MASKS_CSV} lists {train_masks['img'][train_masks['img'].duplicated()].iloc[0]} twice"
            )

        test = set(self.test.names())
        listed = set(sample["img"])
        diff(f"images of {names['test']}", test, SAMPLE_SUBMISSION_CSV, listed, problems)
        diff(f"rows of {SAMPLE_SUBMISSION_CSV}", listed, names["test"], test, problems)
        if sample["img"].duplicated().any():
            problems.append(f"{SAMPLE_SUBMISSION_CSV} lists {sample['img'][sample['img'].duplicated()].iloc[0]} twice")

        problems += self._label_problems(names, dict(zip(train_masks["img"], train_masks["rle_mask"], strict=True)))
        if self.strict:
            problems += self._carvana_problems(names, train, test, mask_stems)
        raise_problems(self.root, problems, "for a subset of Carvana set download.competition to another name")
        return {"train": len(train), "test": len(test)}

    def _label_problems(self, names: dict[str, str], rows: dict[str, str]) -> list[str]:
        """Each labelled image's mask and train_masks.csv row against the image's own size (other data may mix
        sizes; Carvana's are all 1918x1280): the first few problems, each naming the image."""
        problems: list[str] = []
        odd: list[str] = []  # the real data's images of another size than Carvana's
        for name in sorted(self.mask_of):
            if len(problems) >= 3:
                break
            try:
                size = image_size(self.train.read(name), name, upright=True)
            except ImageError as err:
                problems.append(f"{names['train']}: {err}")
                continue
            mask = self.mask_of[name]
            mask_size = image_size(self.mask_zip.read(mask), mask)
            shown = f"{size[1]}x{size[0]}"
            if self.strict and size != self.native_size:
                odd.append(f"{name} ({shown})")
            elif mask_size != size:
                problems.append(
                    f"{names['masks']}: {mask} is {mask_size[1]}x{mask_size[0]} but its image {name} is {shown}: a "
                    f"mask must have its image's size; give {name} its own mask, or remove both"
                )
            elif name in rows:
                try:
                    self.dialect.pairs(rows[name], size)
                except RLEError as err:
                    problems.append(f"{TRAIN_MASKS_CSV}, row {name}: {err} (its image is {shown})")
        h, w = self.native_size
        return problems + ([f"{names['train']}: {len(odd)} images are not {w}x{h}, e.g. {odd[0]}"] if odd else [])

    @staticmethod
    def _carvana_problems(names: dict[str, str], train: set[str], test: set[str], mask_stems: set[str]) -> list[str]:
        """What makes a folder not the real Carvana data: its names and its counts."""
        problems = []
        odd = sorted(n for n in train | test if not NAME.match(n))
        if odd:
            problems.append(f"{len(odd)} file names are not Carvana's <12 hex>_<01..16>.jpg, e.g. {odd[0]}")
        for key, have in (("train", len(train)), ("test", len(test))):
            want = COUNTS[key]
            if have != want:
                problems.append(
                    f"{names[key]} holds {have} images; Carvana has {want} (for a subset of the "
                    f"data, set download.competition to another name)"
                )
        if len(mask_stems) != COUNTS["train"]:
            problems.append(f"{names['masks']} holds {len(mask_stems)} masks; Carvana has {COUNTS['train']}")
        return problems

    # ---- reading
    @property
    def train_names(self) -> list[str]:
        """The train images in train_masks.csv's order."""
        if self._train_names is None:
            self._train_names = read_csv(self.root / TRAIN_MASKS_CSV, COLUMNS)["img"].tolist()
        return self._train_names

    @property
    def test_names(self) -> list[str]:
        if self._test_names is None:
            self._test_names = list(self.submission().images)
        return self._test_names

    def read_image(self, name: str) -> bytes:
        return self.train.read(name)

    def read_test(self, name: str) -> bytes:
        return self.test.read(name)

    def read_mask(self, name: str, expected: Size | None = None) -> np.ndarray:
        mask = self.mask_of.get(name)
        if mask is None:
            raise CompetitionError(f"{name} has no mask in {self.mask_zip.path}; expected {stem(name)}_mask.gif")
        return decode_mask(self.mask_zip.read(mask), mask, self.channels, expected=expected)

    def mask_areas(self, names: list[str]) -> np.ndarray:
        """Each image's share of labelled pixels, over its own size (read from its mask's header: other data may
        mix sizes)."""
        rows = read_csv(self.root / TRAIN_MASKS_CSV, COLUMNS).set_index("img")["rle_mask"]
        sizes = [image_size(self.mask_zip.read(self.mask_of[n]), self.mask_of[n]) for n in names]
        return np.array([area(rows[n]) / (h * w) for n, (h, w) in zip(names, sizes, strict=True)], dtype=np.float64)

    def content(self, names: list[str]) -> str:
        masks = [self.mask_of.get(n, "") for n in names]
        return f"{self.train.content(names)}-{self.mask_zip.content(masks)}"

    def group_of(self, name: str, group: str) -> str:
        if group == "auto" and not self.strict and not all(PREFIX.match(stem(n)) for n in self.train.names()):
            group = "image"  # other data: by prefix only when every name is <prefix>_<NN>
        return super().group_of(name, group)

    # ---- submission and metric
    @classmethod
    def submission_format(cls, root: Path) -> SubmissionFormat:
        return cls.format_for(read_csv(root / SAMPLE_SUBMISSION_CSV, COLUMNS)["img"].tolist())

    @staticmethod
    def format_for(names: list[str]) -> SubmissionFormat:
        """The submission of these test images: `img,rle_mask`, one row each, the car's mask."""
        return SubmissionFormat(COLUMNS, 1, tuple(names), tuple(((0, (n, "")),) for n in names))

    @staticmethod
    def texts(probs: np.ndarray, size: Size, rules: list[Rule], classes: list[int]) -> dict[int, str]:
        """The car's mask: outside the cells on its outline, the run-length encoding needs no up-sampling."""
        rule = rules[0]
        car = postprocess.car_probability(probs)
        if rule.whole:
            return {0: Carvana.dialect.encode(rule.apply(car, size))}
        runs = postprocess.mask_runs(car, size, rule.threshold)
        return {0: Carvana.dialect.text(runs)}

    @staticmethod
    def masks(probs: np.ndarray, size: Size, rules: list[Rule], classes: list[int]) -> dict[int, np.ndarray]:
        return {0: rules[0].apply(postprocess.car_probability(probs), size)}

    def scoreboard(self, areas: bool = False):
        from pipeline.masks.scoring import Scoreboard  # torch, which encode's workers do without

        return Scoreboard(self.channels)

    @classmethod
    def score(cls, submission: Path, truth: Path, size: Size) -> float:
        """Mean per-image Dice of a submission (gzip or plain CSV) against img,rle_mask truth, both row-major."""
        from pipeline.masks.scoring import dice

        sub = _read_rows(submission)
        want = dict(read_csv(truth, COLUMNS)[list(COLUMNS)].values)
        if set(sub) != set(want):
            raise CompetitionError(f"{submission} must have one row per test image of {truth}")
        return float(
            np.mean(
                [dice(cls.dialect.decode(sub[n], size), cls.dialect.decode(code, size)) for n, code in want.items()]
            )
        )


def _read_rows(path: Path) -> dict[str, str]:
    data = Path(path).read_bytes()
    text = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
    table = pd.read_csv(io.BytesIO(text), dtype=str, keep_default_na=False)
    if list(table.columns) != list(COLUMNS):
        raise CompetitionError(f"{path} must have the columns {','.join(COLUMNS)}, has {','.join(table.columns)}")
    return dict(table.values)
