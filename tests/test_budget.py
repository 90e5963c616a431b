"""What a run will cost, before it runs: `kseg budget`, and predict's refusal when the disk is too small."""

from __future__ import annotations

import re
import time

import pytest
import torch

from pipeline import budget
from tests.conftest import ROOT, carvana


def readme_recipe() -> list[str]:
    """The `-S` settings of the documented recipe for the real competition, as docs/howto-encoders.md gives them."""
    text = (ROOT / "docs/howto-encoders.md").read_text()
    block = text.split("**The recipe for the real competition on one GPU**", 1)[1].split("```bash", 1)[1]
    return re.findall(r"-S (\S+)", block.split("```", 1)[0])


def figures(line: str) -> tuple[str, str]:
    """(time, disk) of one stage's line, both present and positive."""
    found = re.search(r": ~([\d.]+ (?:s|min|h|days)), outs ~([\d.]+ (?:B|kB|MB|GB)) \(", line)
    assert found, line
    assert float(found[1].split()[0]) > 0 and float(found[2].split()[0]) > 0, line
    return found[1], found[2]


PLANNED = [
    "train.scale=0.125",
    "train.epochs=8",
    "train.batch_size=8",
    "train.model.base_channels=8",
    "predict.tta=hflip",
]


def test_budget_of_the_demo_and_of_the_real_recipe_runs_nothing(tmp_path):
    nothing = tmp_path / "raw"  # no data yet: nothing to plan from, so the values the plan would choose are given
    auto = carvana("budget", "--params", ROOT / "params.yaml", "--data", nothing, check=False)
    assert auto.returncode == 1 and "train.scale is auto, which the plan chooses from the data" in auto.stderr
    planned = [f"-S{s}" for s in PLANNED]
    demo = carvana("budget", "--params", ROOT / "params.yaml", "--data", nothing, *planned).stdout.splitlines()
    assert "192 train and 64 test images of 1918x1280 (the demo, not rendered yet)" in demo[0]
    assert demo[1].startswith("train: 1 fold(s) x 8 epochs x 154 images (+ 38 validation) at 240x160: ~")
    assert demo[2].startswith("predict: 64 images x 2 passes (1 fold(s) x hflip TTA) at 240x160: ~")
    figures(demo[1]), figures(demo[2])

    recipe = readme_recipe()
    assert "train.scale=1.0" in recipe and "download.source=kaggle" in recipe
    real = carvana("budget", "--params", ROOT / "params.yaml", "--data", nothing, *[f"-S{s}" for s in recipe])
    lines = real.stdout.splitlines()
    assert "5,088 train and 100,064 test images of 1918x1280 (Kaggle's Carvana Image Masking Challenge)" in lines[0]
    assert lines[1].startswith("train: 5 fold(s) x 40 epochs x 4,070 images (+ 1,018 validation) at 1024x1024: ~")
    assert lines[2].startswith("predict: 100,064 images x 10 passes (5 fold(s) x hflip TTA) at 1918x1280: ~")
    _, disk = figures(lines[2])
    assert disk.endswith("GB") and 10 < float(disk.split()[0]) <= 15  # full-size maps of the test set, <= 150 kB each
    assert not list(tmp_path.iterdir())  # nothing was written


def test_budget_counts_the_competition_folder_when_there_is_one_and_uses_its_plan(tiny_demo):
    lines = carvana("budget", "--params", ROOT / "params.yaml", "--data", tiny_demo).stdout.splitlines()
    assert f"48 train and 16 test images of 160x96 ({tiny_demo})" in lines[0]
    plan = carvana("plan", "--params", ROOT / "params.yaml", "--data", tiny_demo).stdout
    scale, epochs = (float(re.search(rf"^train\.{k} +([\d.]+)", plan, re.M)[1]) for k in ("scale", "epochs"))
    assert (
        f"x {int(epochs)} epochs x 38 images (+ 10 validation) at {round(160 * scale)}x{round(96 * scale)}" in lines[1]
    )


def test_absurd_sizes_are_timed_smaller_and_scaled_so_the_budget_answers_in_seconds():
    """8192x8192 images at train.scale 4: the former timing decoded to 32768x32768 and scored 4 maps of that size
    (16 GB of random numbers alone) for minutes; their times are linear in the pixels, so a smaller copy is timed."""
    absurd = budget.Data(192, 64, (8192, 8192), 3, 4, "absurd", None)
    started = time.perf_counter()
    decode, score = budget.decoding_seconds(absurd, (32768, 32768)), budget.scoring_seconds(absurd, (32768, 32768))
    assert time.perf_counter() - started < 60
    small = budget.Data(192, 64, (1024, 1024), 3, 4, "timed as they are", None)  # 256x fewer pixels
    assert decode > 100 * budget.decoding_seconds(small, (2048, 2048))
    assert score > 100 * budget.scoring_seconds(small, (2048, 2048))


def test_a_batch_that_does_not_fit_the_device_stops_in_one_line_naming_the_params():
    def too_big(x):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 64.00 GiB")

    rt = budget.runtime.for_inference(False)
    with pytest.raises(budget.MemoryBudgetError, match="a batch does not fit in the memory of cpu: lower train.batch"):
        budget.forward_seconds(too_big, rt, (2, 3, 64, 64))


def test_a_bad_override_is_one_line(tmp_path):
    bad = carvana("budget", "--params", ROOT / "params.yaml", "-S", "train.scale=0", check=False)
    assert bad.returncode != 0 and "train.scale must be in [0.01, 4], got 0" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


def test_too_little_disk_refuses_in_one_line_before_any_work(tmp_path):
    with pytest.raises(budget.DiskError) as refused:
        budget.ensure_room(tmp_path / "predictions", 10**18, "the predictions")
    message = str(refused.value)
    assert "\n" not in message
    assert re.match(r"not enough disk for the predictions in .*: needs ~1000000000\.0 GB, [\d.]+ \w+ free; ", message)
    budget.ensure_room(tmp_path / "predictions", 1, "the predictions")  # a byte fits


def test_the_train_line_counts_each_fold_as_the_split_made_it():
    from pipeline import params, runtime
    from pipeline.planning import resolve

    chosen = {"train.scale": 0.5, "train.model.base_channels": 4, "train.batch_size": 2, "train.lr": 0.003,
              "train.epochs": 2, "train.bce_weight": 1.0, "train.dice_weight": 1.0, "train.augment.hflip": 0.5,
              "train.augment.vflip": 0.0, "train.augment.saturation": 0.0, "train.augment.hue": 0.0}  # fmt: skip
    p = resolve.resolve(params.load("split", "train", path=ROOT / "params.yaml"), chosen)
    data = budget.Data(97, 3, (48, 64), 3, 1, "here", None)
    rt = runtime.for_training(False, False)
    guessed = budget.train_cost(p, data, rt)  # no split yet: 97 images in 5 folds, about a fifth each
    assert "1 fold(s) x 2 epochs x 78 images (+ 19 validation) at 32x24" in guessed.work, guessed.work
    split = budget.train_cost(p, data, rt, [(77, 20)])
    assert "x 77 images (+ 20 validation)" in split.work, split.work
    every = budget.train_cost(p, data, rt, [(77, 20), (78, 19), (78, 19), (78, 19), (78, 19)])
    assert "5 fold(s) x 2 epochs x 77-78 images (+ 19-20 validation)" in every.work, every.work
