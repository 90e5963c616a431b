"""A miniature Carvana competition, rendered deterministically from a seed: the files.

Each car (demo_cars: a small 3-D model of a lower body, a cabin with windows, four wheels, lights and a
grille) is drawn through Carvana's 16 turntable views (demo_render), with an exact mask. Files, names and
formats follow Kaggle's: `train.zip` (train/<id>_<NN>.jpg), `train_masks.zip` (train_masks/<id>_<NN>_mask.gif,
palette values 0/1), `train_masks.csv`, `test.zip`, `sample_submission.csv`, `metadata.csv`. The test truth
goes to a separate folder that no pipeline stage reads.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline.competitions.archive import write_member
from pipeline.competitions.base import write_csv
from pipeline.competitions.carvana import DEMO_PARTS
from pipeline.competitions.carvana.demo_cars import MAKES, make_car
from pipeline.competitions.carvana.demo_render import VIEWS, render
from pipeline.masks import rle

TRUTH = "test_masks.csv"  # the test masks, in train_masks.csv's layout


def _jpeg(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _mask_file(index_mask: np.ndarray, multiclass: bool) -> bytes:
    """Binary masks as Kaggle's palette GIF (values 0/1); multi-class as palette PNG (class indices)."""
    buf = io.BytesIO()
    if multiclass:
        img = Image.fromarray(index_mask, mode="P")
        img.putpalette([0, 0, 0, 200, 30, 30, 40, 120, 220, 250, 200, 40, 250, 250, 250] + [0] * 3 * 251)
        img.save(buf, format="PNG")
    else:
        img = Image.fromarray((index_mask > 0).astype(np.uint8), mode="P")
        img.putpalette([0, 0, 0, 255, 255, 255] + [0] * 3 * 254)
        img.save(buf, format="GIF")
    return buf.getvalue()


def _render_job(seed: int, split: int, car_index: int, view: int, width: int, height: int, multiclass: bool):
    car = make_car(np.random.default_rng([seed, split, car_index]))
    rgb, index_mask = render(car, view, width, height, np.random.default_rng([seed, split, car_index, view]))
    name = f"{car.car_id}_{view:02d}"
    return name, _jpeg(rgb), _mask_file(index_mask, multiclass), rle.encode(index_mask > 0)


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
    """Write the demo competition (`train` and `test` cars of 16 views each) into `out_dir` and its test truth into
    `truth_dir`.

    Returns the number of train and test images. The same arguments give byte-identical files.
    """
    from joblib import Parallel, delayed
    from tqdm import tqdm

    out_dir.mkdir(parents=True, exist_ok=True)
    truth_dir.mkdir(parents=True, exist_ok=True)
    cars = {
        0: [make_car(np.random.default_rng([seed, 0, i])) for i in range(train)],
        1: [make_car(np.random.default_rng([seed, 1, i])) for i in range(test)],
    }
    jobs_list = [(split, i, v) for split in (0, 1) for i in range(len(cars[split])) for v in range(1, VIEWS + 1)]
    mask_ext = "png" if multiclass else "gif"
    tmp = {n: out_dir / f".{n}.tmp" for n in ("train.zip", "train_masks.zip", "test.zip")}
    train_rows, test_rows = [], []
    with (
        zipfile.ZipFile(tmp["train.zip"], "w") as z_train,
        zipfile.ZipFile(tmp["train_masks.zip"], "w") as z_masks,
        zipfile.ZipFile(tmp["test.zip"], "w") as z_test,
    ):
        results = Parallel(n_jobs=jobs, return_as="generator")(
            delayed(_render_job)(seed, split, i, v, width, height, multiclass) for split, i, v in jobs_list
        )
        for (split, _, _), (name, jpeg, mask, run) in tqdm(
            zip(jobs_list, results, strict=True), total=len(jobs_list), desc="demo", unit="img"
        ):
            if split == 0:
                write_member(z_train, f"train/{name}.jpg", jpeg)
                write_member(z_masks, f"train_masks/{name}_mask.{mask_ext}", mask)
                train_rows.append((f"{name}.jpg", run))
            else:
                write_member(z_test, f"test/{name}.jpg", jpeg)
                test_rows.append((f"{name}.jpg", run))
    for name, path in tmp.items():
        path.replace(out_dir / name)

    write_csv(out_dir / "train_masks.csv", ("img", "rle_mask"), train_rows)
    write_csv(out_dir / "sample_submission.csv", ("img", "rle_mask"), [(n, "1 1") for n, _ in test_rows])
    meta = [(c.car_id, c.year, *MAKES[c.kind], c.color_name, "") for split in (0, 1) for c in cars[split]]
    write_csv(out_dir / "metadata.csv", ("id", "year", "make", "model", "trim1", "trim2"), meta)
    write_csv(truth_dir / TRUTH, ("img", "rle_mask"), test_rows)
    classes = out_dir / "classes.json"
    if multiclass:
        classes.write_text(json.dumps({"names": list(DEMO_PARTS)}) + "\n")
    else:
        classes.unlink(missing_ok=True)
    return {"train": len(train_rows), "test": len(test_rows)}
