"""Planning from the data: each rule on synthetic fingerprints, the plan that keeps the user's values, its files and
their reading by the stages, the fingerprint of real data and the bad input it refuses in one line."""

from __future__ import annotations

import io
import json
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from pipeline import params
from pipeline.competitions import open_competition
from pipeline.planning import fingerprint, plan, resolve, rules
from pipeline.planning.fingerprint import ClassPrint, Fingerprint, PlanError
from tests.conftest import ROOT

CPU = rules.Device("cpu", "CPU (2 cores)", {})
GPU = rules.Device("cuda", "NVIDIA H200", {})


def cls(name="car", empty=0.0, share=0.3, thin=500.0, kept=None) -> ClassPrint:
    kept = kept or {"0.125": 0.999, "0.25": 0.9995, "0.5": 0.9999, "1.0": 1.0}
    return ClassPrint(name, empty, share, 1000.0, 5000.0, thin, kept)


def fp(**changes) -> Fingerprint:
    base = Fingerprint(
        competition="c", labels="binary", train=192, test=64, size=(1280, 1918), sizes=1, spread=1.0, channels=3,
        grey=False,
        intensity={"p0.5": 0.0, "p99.5": 255.0, "mean": 128.0, "std": 50.0}, classes=[cls()], background_thin=0.0,
        updown=10.0, leftright=0.9, groups="prefix", sampled=96,
    )  # fmt: skip
    return replace(base, **changes)


def test_the_scale_is_the_smallest_that_keeps_every_class_and_its_thinnest_structures():
    assert rules.scale(fp()).value == 0.125  # large smooth objects: the smallest scale
    kept = {"0.125": 0.64, "0.25": 0.914, "0.5": 0.983, "1.0": 1.0}
    sparse = fp(classes=[cls("pits", 0.6, 0.003, 5.7, kept), cls("streaks", 0.5, 0.03, 12.0)])
    choice = rules.scale(sparse)
    assert choice.value == 0.5 and "pits" in choice.reason and "0.25: Dice 0.914" in choice.reason
    membranes = fp(classes=[cls("interior", kept={"0.125": 0.93, "0.25": 0.985, "0.5": 0.996, "1.0": 1.0})],
                   background_thin=5.7)  # fmt: skip
    assert rules.scale(membranes).value == 0.5 and "the background" in rules.scale(membranes).reason  # not 0.25
    assert rules.scale(fp(classes=[cls("contrails", thin=1.2)])).value == 2.0  # too thin for the full size
    assert rules.scale(fp(classes=[cls("hairs", thin=0.3)])).value == 4.0
    with pytest.raises(PlanError, match=r"the images come in 7 sizes \(sides up to 3.0x apart.* set train.scale"):
        rules.scale(fp(sizes=7, spread=3.0))


def test_groups_width_batch_and_learning_rate():
    assert rules.group(fp()).value == "prefix" and rules.group(fp(groups="image")).value == "image"
    assert rules.width(CPU, False).value == 8 and rules.width(GPU, False).value == 32
    assert rules.batch(fp(), CPU, 5).value == 8 and rules.batch(fp(train=30), CPU, 5).value == 3
    assert rules.batch(fp(train=8), CPU, 5).value == 2 and rules.batch(fp(), GPU, 5).value == 16
    assert rules.lr(False).value == 3e-3 and rules.lr(True).value == 3e-4


def test_epochs_see_enough_images_within_the_time_given():
    device = replace(CPU, epoch_seconds={0.125: 7.0})
    assert rules.epochs(fp(), device, 0.125, 10, 5, 1).value == 8  # 1,200 images of 154 a fold
    sparse = fp(classes=[cls("pits", share=0.003)])
    choice = rules.epochs(sparse, device, 0.125, 10, 5, 1)
    assert choice.value == 20 and "3,000" in choice.reason and "pits sparse" in choice.reason
    assert rules.epochs(fp(train=30), device, 0.125, 10, 5, 1).value == 50
    assert rules.epochs(fp(train=20_000), device, 0.125, 100, 5, 1).value == 8  # a large set: the floor
    short = rules.epochs(sparse, replace(CPU, epoch_seconds={0.125: 60.0}), 0.125, 10, 5, 1)
    assert short.value == 10 and "raise train.minutes" in short.reason
    assert rules.epochs(sparse, device, 0.125, 10, 5, 5).value == 17  # five models share the time
    with pytest.raises(PlanError, match=r"train.minutes 0.1 is too short for even one epoch .* raise train.minutes"):
        rules.epochs(fp(), device, 0.125, 0.1, 5, 1)


def test_loss_flips_colour_and_tta_follow_the_data():
    sparse = fp(classes=[cls("pits", share=0.003), cls("streaks", share=0.03)])
    assert [c.value for c in rules.loss(sparse)] == [1.0, 2.0] and [c.value for c in rules.loss(fp())] == [1.0, 1.0]
    assert [c.value for c in rules.flips(fp())] == [0.5, 0.0]  # cars: mirrored yes, upside down no
    assert [c.value for c in rules.flips(fp(updown=0.8, leftright=0.7))] == [0.5, 0.0]  # one flip trains; TTA both
    assert [c.value for c in rules.flips(fp(updown=0.8, leftright=5.0))] == [0.0, 0.5]  # a left and right, no up
    assert [c.value for c in rules.flips(fp(updown=3.0, leftright=5.0))] == [0.0, 0.0]
    assert [c.value for c in rules.colour(fp(grey=True))] == [0.0, 0.0]
    assert [c.value for c in rules.colour(fp(channels=1))] == [0.0, 0.0]
    assert [c.value for c in rules.colour(fp())] == [0.2, 0.03]
    assert rules.tta(fp()).value == "hflip"
    assert rules.tta(fp(updown=0.8, size=(256, 1600))).value == "hvflip"
    assert rules.tta(fp(updown=0.8, size=(512, 512))).value == "d4"
    assert rules.tta(fp(leftright=5.0, updown=0.5)).value == "vflip"
    assert rules.tta(fp(leftright=5.0)).value == "none"


def test_thresholds_and_the_empty_mask_rule():
    sparse = fp(classes=[cls("pits", empty=0.6, share=0.003)])
    assert [c.value for c in rules.thresholds(sparse)] == [0.1, 0.9]
    assert [c.value for c in rules.thresholds(fp())] == [0.2, 0.8]
    assert rules.empty_rule(sparse).value is True and "pits 60%" in rules.empty_rule(sparse).reason
    assert rules.empty_rule(fp()).value is False


class Timer:
    device = ("cpu", "CPU (2 cores)")

    def __init__(self):
        self.asked = []

    def __call__(self, t) -> float:
        self.asked.append((t.scale, t.model.base_channels, t.batch_size))
        return 7.0


def test_the_plan_keeps_what_the_user_set_and_times_what_it_chose():
    p = params.load(path=ROOT / "params.yaml", overrides=["train.epochs=3", "predict.tta=d4"])
    timer = Timer()
    chosen = plan.make(fp(), p, timer)
    assert set(chosen) == set(resolve.PLANNED)
    assert chosen["train.epochs"] == rules.Choice(3, "set in params.yaml", "user")
    assert chosen["predict.tta"].value == "d4" and chosen["predict.tta"].by == "user"
    assert chosen["train.scale"].value == 0.125 and chosen["train.scale"].by == "rule"
    assert timer.asked == []  # train.epochs set: nothing to time
    assert "(yours) set in params.yaml" in plan.describe(chosen)


def test_the_demo_plan_the_benches_and_tests_use_is_the_plan_of_192_cars_on_a_cpu():
    from bench.common import CARVANA_PLAN

    timer = Timer()
    chosen = plan.make(fp(), params.load(path=ROOT / "params.yaml"), timer)
    assert {key: c.value for key, c in chosen.items()} == CARVANA_PLAN
    assert timer.asked == [(0.125, 8, 8)]  # the epoch timed at the scale, width and batch chosen


def test_each_stage_reads_its_part_of_the_plan_and_nothing_stays_auto(tmp_path):
    p = params.load(path=ROOT / "params.yaml")
    chosen = plan.make(fp(), p, Timer())
    plan.write(chosen, fp(), tmp_path / "plan", tmp_path / "reports")
    train = json.loads((tmp_path / "plan/train.json").read_text())
    assert set(train) == set(resolve.STAGES["train"]) and "predict.tta" not in train  # a TTA choice never retrains
    shown = json.loads((tmp_path / "reports/plan.json").read_text())
    assert shown["train.scale"] == {"value": 0.125, "reason": chosen["train.scale"].reason, "by": "rule"}
    resolved = resolve.resolved(p, tmp_path / "plan", "train")
    assert resolved["train"].scale == 0.125 and resolved["train"].augment.vflip == 0.0
    assert resolved["train"].model.base_channels == 8 and resolved["predict"].tta == "auto"  # not train's to read
    with pytest.raises(params.UserError, match="none/evaluate.json is missing: run `dvc repro plan`"):
        resolve.resolved(p, tmp_path / "none", "evaluate")


def test_the_fingerprint_of_rendered_cars(tiny_demo):
    comp = open_competition(tiny_demo, "carvana-image-masking-challenge")
    found = fingerprint.compute(comp, "carvana-image-masking-challenge")
    assert found.train == 48 and found.groups == "prefix" and found.sizes == 1 and found.size == (96, 160)
    (car,) = found.classes
    assert car.empty == 0.0 and 0.05 < car.share < 0.6 and car.kept["1.0"] == 1.0 and car.kept["0.125"] < 1.0
    assert found.updown >= 2.0  # cars stand on the floor: no upside down
    assert Fingerprint.from_dict(json.loads(json.dumps(found.to_dict()))) == found  # the file holds it whole


def test_data_the_planner_cannot_plan_from_is_refused_in_one_line(tmp_path):
    from pipeline.competitions.carvana import demo
    from pipeline.competitions.folder import Folder

    demo.generate(tmp_path / "raw", tmp_path / "truth", seed=1, train=1, test=1, width=64, height=48, jobs=1)
    comp = Folder(tmp_path / "raw")
    comp._train_names = comp.train_names[:3]
    with pytest.raises(PlanError, match="holds 3 labelled images: at least 4"):
        fingerprint.compute(comp, "few")
    comp._train_names = None
    comp.read_mask = lambda name, expected=None: np.zeros(expected, np.uint8)  # every mask empty
    with pytest.raises(PlanError, match="every sampled mask .* is empty: there is nothing to learn"):
        fingerprint.compute(comp, "empty")


def test_the_fingerprint_reads_16_bit_big_endian_slices_as_training_does(tmp_path):
    from pipeline.competitions.carvana import demo
    from pipeline.competitions.folder import Folder

    demo.generate(tmp_path / "raw", tmp_path / "truth", seed=1, train=1, test=1, width=64, height=48, jobs=1)
    comp = Folder(tmp_path / "raw")
    buf = io.BytesIO()  # ImageJ's TIFF: 16-bit big-endian grey, which Pillow's convert("RGB") clips at 255
    Image.fromarray(np.random.default_rng(0).integers(1000, 4000, (48, 64)).astype(">u2")).save(buf, "TIFF")
    comp.read_image = lambda name: buf.getvalue()
    found = fingerprint.compute(comp, "em")
    assert found.channels == 1 and not found.grey and found.intensity["p0.5"] >= 1000


def test_kept_dice_and_symmetry_measures():
    disc = np.zeros((64, 64), bool)
    yy, xx = np.mgrid[:64, :64]
    disc[(yy - 32) ** 2 + (xx - 32) ** 2 < 20**2] = True
    assert fingerprint.kept_dice(disc, 1.0) == 1.0 and fingerprint.kept_dice(disc, 0.25) > 0.97
    line = np.zeros((64, 64), bool)
    line[:, 30:32] = True
    assert fingerprint.kept_dice(line, 0.125) < 0.5  # a 2-px line is gone at 1/8
    areas, radii = fingerprint.radii(line)
    assert list(areas) == [128] and radii[0] == 1.0
    rng = np.random.default_rng(0)
    flat = [rng.normal(1.0, 0.1, 64) for _ in range(40)]
    ramp = [np.linspace(0, 1, 64) + rng.normal(0, 0.1, 64) for _ in range(40)]
    assert fingerprint.asymmetry(flat) < 2.0 < fingerprint.asymmetry(ramp)
