"""The GPU path in one prepared command: proves the CUDA code paths and measures the card's throughput.

    python -m bench.gpu --out gpu-report             # on a GPU machine: about 5 minutes on one H100
    python -m bench.gpu --out /tmp/gpu --dry-run     # tiny sizes on the CPU in seconds (part of the tests)

Writes DIR/report.json and DIR/report.md after every step, so a run cut short still leaves what it
measured. It needs torch, numpy, pandas, Pillow, tqdm, joblib, ruamel.yaml and pydantic, and
segmentation_models_pytorch for the encoder lines (README, "The GPU check": how to bring them as wheels to a node
without network); DVC, dvclive and kaggle are not used.

Correctness (pass/fail): training at scale 0.25 with bf16 autocast, fp16 with the GradScaler, channels_last,
torch.compile (time-capped, in a child process) and the recipe's smp encoder; resume (one epoch, then a resumed
one, against two straight epochs, within the spread of two straight runs); DDP under torchrun on NCCL;
AMP prediction with flip TTA against float32 (full-size mask pixels that agree). Throughput: training
images/s at the largest batch that fits, for the seed's U-Net and the README's recipe, and predict +
encode over a Kaggle-like test.zip, with where the time goes and the time for the 100,064 test images.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import threading
import time
import traceback
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from bench.common import demo_params
from pipeline import params, runtime, training
from pipeline.competitions import open_competition
from pipeline.competitions.archive import ImageArchive, write_member
from pipeline.competitions.carvana import SLUG, Carvana, demo
from pipeline.data import preprocess, split
from pipeline.evaluation import evaluate
from pipeline.masks import postprocess
from pipeline.masks.postprocess import Rule
from pipeline.models import checkpoint
from pipeline.models.factory import count_parameters, create_model
from pipeline.models.losses import SegmentationLoss
from pipeline.prediction import predict
from pipeline.prediction.predictor import load_predictor
from pipeline.submission import encode

ROOT = Path(__file__).resolve().parents[1]
KAGGLE_TEST_IMAGES = 100_064
RECIPE_LR = 3e-4  # the README's real-competition recipe: an ImageNet encoder's U-Net at full resolution


@dataclass(frozen=True)
class Sizes:
    """Everything that differs between the real check and the CPU dry run."""

    width: int
    height: int
    train: int  # demo cars
    test: int
    epochs: int
    base_channels: int
    depth: int
    dice_floor: float  # validation Dice every precision variant must reach after `epochs` epochs
    seed_base: int  # the seed's U-Net width for the throughput figures
    encoder: str  # the recipe's encoder (random weights here: no download)
    recipe_scale: float  # the recipe's input scale and training crop
    recipe_crop: tuple[int, int]
    workers: int  # DataLoader workers for the training checks
    throughput_scale: float
    batches: tuple[int, ...]  # candidate batch sizes, tried in order until one does not fit
    steps: int  # timed training steps per batch size
    predict_images: int
    predict_batch: int
    compile_cap_s: int
    child_cap_s: int


FULL = Sizes(
    width=1918, height=1280, train=6, test=1, epochs=8, base_channels=8, depth=4, dice_floor=0.80,
    seed_base=64, encoder="resnet34", recipe_scale=1.0, recipe_crop=(1024, 1024), workers=8, throughput_scale=0.5,
    batches=(2, 4, 8, 16, 24, 32, 48, 64, 96, 128), steps=6, predict_images=3000, predict_batch=16, compile_cap_s=240,
    child_cap_s=240,
)  # fmt: skip
DRY = Sizes(
    width=160, height=96, train=3, test=1, epochs=1, base_channels=4, depth=2, dice_floor=0.0, seed_base=8,
    encoder="mobilenet_v2", recipe_scale=1.0, recipe_crop=(64, 64), workers=0, throughput_scale=0.5, batches=(2, 4),
    steps=2, predict_images=24, predict_batch=4, compile_cap_s=0, child_cap_s=120,
)  # fmt: skip


class Report:
    """Checks (pass/fail/skipped with a detail) and figures (value, unit, detail), written out after each."""

    def __init__(self, out: Path, header: dict):
        self.out, self.header = out, header
        self.checks: list[dict] = []
        self.figures: list[dict] = []
        self.started = time.perf_counter()
        out.mkdir(parents=True, exist_ok=True)

    def check(self, name: str, ok: bool | None, detail: str) -> None:
        status = {True: "pass", False: "FAIL", None: "skipped"}[ok]
        self.checks.append({"check": name, "status": status, "detail": detail})
        print(f"[{status}] {name}: {detail}", flush=True)
        self.write()

    def figure(self, name: str, value: float | None, unit: str, detail: str = "") -> None:
        self.figures.append({"figure": name, "value": value, "unit": unit, "detail": detail})
        shown = "n/a" if value is None else f"{value:,.4g}"
        print(f"  {name}: {shown} {unit} {detail}", flush=True)
        self.write()

    def write(self) -> None:
        seconds = time.perf_counter() - self.started
        body = {**self.header, "seconds": round(seconds, 1), "checks": self.checks, "figures": self.figures}
        (self.out / "report.json").write_text(json.dumps(body, indent=2) + "\n")
        lines = [f"# GPU check: {self.header['device']}", ""]
        lines += [f"- {k}: {v}" for k, v in self.header.items() if k != "device"] + [f"- seconds: {seconds:.0f}", ""]
        lines += ["| check | result | detail |", "| --- | --- | --- |"]
        lines += [f"| {c['check']} | {c['status']} | {c['detail']} |" for c in self.checks]
        lines += ["", "| figure | value | unit | detail |", "| --- | --- | --- | --- |"]
        for f in self.figures:
            value = "n/a" if f["value"] is None else f"{f['value']:,.4g}"
            lines.append(f"| {f['figure']} | {value} | {f['unit']} | {f['detail']} |")
        (self.out / "report.md").write_text("\n".join(lines) + "\n")


def describe_device() -> dict:
    cuda = torch.cuda.is_available()
    return {
        "device": torch.cuda.get_device_name() if cuda else f"CPU ({platform.machine()}, {os.cpu_count()} cores)",
        "gpus": torch.cuda.device_count() if cuda else 0,
        "torch": torch.__version__,
        "cuda": torch.version.cuda if cuda else None,
        "bf16": bool(cuda and torch.cuda.is_bf16_supported()),
        "python": platform.python_version(),
        "cpu_cores": os.cpu_count(),
    }


# ---------------------------------------------------------------------------------------------- data


def render_demo(work: Path, s: Sizes) -> Path:
    """A demo competition at the check's size (Kaggle's file layout), rendered once per work folder."""
    raw = work / "raw"
    if not (raw / "sample_submission.csv").is_file():
        demo.generate(
            raw,
            work / "truth",
            seed=2017,
            train=s.train,
            test=s.test,
            width=s.width,
            height=s.height,
        )
    return raw


def folds_of(raw: Path) -> pd.DataFrame:
    comp = open_competition(raw, SLUG)
    return split.split_competition(comp, folds=3, seed=0, stratify=False, group="car")


def kaggle_like_test_zip(raw: Path, path: Path, count: int) -> list[str]:
    """A stored zip of `count` test JPEGs under distinct names, as Kaggle's test.zip holds them: the demo's
    test images repeated (decoding cost is per file, so repeats measure the same work)."""
    source = ImageArchive(raw / "test.zip")
    pictures = [source.read(n) for n in source.names()]
    names = [f"{i:012x}_{i % 16 + 1:02d}.jpg" for i in range(count)]
    with zipfile.ZipFile(path, "w") as z:
        for i, name in enumerate(names):
            write_member(z, f"test/{name}", pictures[i % len(pictures)])
    return names


# ---------------------------------------------------------------------------------------------- training


def train_params(s: Sizes, **changes) -> params.TrainParams:
    """params.yaml's train section at the check's size (validated like any params), `auto` as the Carvana demo's plan
    on a CPU has it: the same recipe from one loan to the next."""
    p = demo_params("train", path=ROOT / "params.yaml")["train"]
    model = params.replace(p.model, base_channels=s.base_channels, depth=s.depth)
    base = dict(model=model, scale=0.25, epochs=s.epochs, batch_size=4, warmup_epochs=0.5, workers=s.workers)
    p = params.replace(p, **{**base, **changes})
    return p


def train(raw: Path, out: Path, p: params.TrainParams, dtype=None, stop_after=None) -> training.FoldResult:
    rt = training.setup(p, dtype)
    comp = open_competition(raw, SLUG)
    return training.train_fold(p, rt, comp, folds_of(raw), 0, out, progress=False, stop_after=stop_after)


def check_training(report: Report, raw: Path, work: Path, s: Sizes, device: torch.device) -> Path | None:
    """The precision and layout variants; returns the bf16 model for the prediction check."""
    low = torch.bfloat16
    half = torch.float16
    variants = [
        ("bf16 autocast", dict(channels_last=False), low),
        ("fp16 autocast + GradScaler", dict(channels_last=False), half),
        ("channels_last + bf16", dict(channels_last=True), low),
    ]
    kept = None
    for name, changes, dtype in variants:
        out = work / "train" / name.split()[0]
        try:
            started = time.perf_counter()
            result = train(raw, out, train_params(s, **changes), dtype)
            losses = [r["train_loss"] for r in result.history] + [r["val_loss"] for r in result.history]
            finite = all(np.isfinite(losses))
            ok = finite and result.best_dice >= s.dice_floor
            report.check(
                f"train {name}",
                ok,
                f"{s.epochs} epochs at scale 0.25 in {time.perf_counter() - started:.0f} s: losses "
                f"{'finite' if finite else 'NOT finite'}, best val Dice {result.best_dice:.4f} (floor "
                f"{s.dice_floor}), {result.history[-1]['images_per_s']:.0f} img/s",
            )
            if name == "bf16 autocast":
                kept = out / "best.pt"
        except Exception as err:  # a failing variant must not hide the others
            report.check(f"train {name}", False, _failure(err))
    if s.compile_cap_s <= 0:
        report.check("train torch.compile", None, "not in the dry run: inductor compiles C++ for minutes on a CPU")
    else:
        run_child(report, "train torch.compile", ["compile"], work, s, s.compile_cap_s)
    return kept


def check_resume(report: Report, raw: Path, work: Path, s: Sizes) -> None:
    """Two straight epochs twice (their spread is the noise of non-deterministic kernels), then one epoch
    and a resumed second: the resumed weights must lie within that spread (exactly equal where it is 0)."""
    p = train_params(s, epochs=2, channels_last=False, amp=False)
    root = work / "resume"
    try:
        train(raw, root / "a", p)
        train(raw, root / "b", p)
        train(raw, root / "cut", p, stop_after=1)
        cut_epoch = checkpoint.load(root / "cut" / "last.pt")["epoch"]
        train(raw, root / "cut", p)
        a, b, r = (checkpoint.load(root / n / "last.pt")["state_dict"] for n in ("a", "b", "cut"))
        spread, gap = _max_diff(a, b), _max_diff(a, r)
        ok = cut_epoch == 1 and gap <= max(spread * 2, 0.0)
        report.check(
            "resume (1 + resumed 1 epoch vs 2 epochs, float32)",
            ok,
            f"stopped after epoch {cut_epoch}; largest weight difference resumed vs straight {gap:.3g}, straight vs "
            f"straight {spread:.3g} (tolerance: twice the straight spread; 0 means bit-exact)",
        )
    except Exception as err:
        report.check("resume", False, _failure(err))


def _max_diff(a: dict, b: dict) -> float:
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a if a[k].is_floating_point())


def check_prediction(report: Report, raw: Path, model_path: Path | None, device: torch.device, s: Sizes) -> None:
    """Probabilities under bf16 autocast with flip TTA against float32, as full-size masks at 0.5; and the rules
    evaluate chooses under predict's Runtime (bf16) against float32."""
    if model_path is None or not model_path.is_file():
        report.check("AMP prediction vs float32", False, "no bf16 model was trained")
        return
    comp = open_competition(raw, SLUG)
    predictor = load_predictor([model_path], device)
    table = folds_of(raw)
    names = table.query("fold == 0")["img"].tolist()
    agree = total = 0
    for start in range(0, len(names), 8):
        batch = [predictor.pre.load(comp.read_image(n), n) for n in names[start : start + 8]]
        x = torch.stack([b[0] for b in batch]).to(device)
        fp32 = postprocess.to_uint8(predictor(x, "hflip"))
        amp = postprocess.to_uint8(predictor(x, "hflip", runtime.autocast(device, torch.bfloat16)))
        for i, (_, original) in enumerate(batch):
            m32 = postprocess.full_mask(fp32[i, 0], original, 0.5)
            m16 = postprocess.full_mask(amp[i, 0], original, 0.5)
            agree += int((m32 == m16).sum())
            total += m32.size
    fraction = agree / total
    report.check(
        "AMP (bf16) prediction with flip TTA vs float32",
        fraction >= 0.999,
        f"{100 * fraction:.4f} % of {total:,} full-size mask pixels agree over {len(names)} images (target 99.9 %)",
    )
    models = model_path.parent / "evaluate"
    (models / "fold0").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(model_path, models / "fold0" / "best.pt")
    chosen = []
    for amp_on in (True, False):
        rt = runtime.for_inference(amp_on)
        board, fold_of = evaluate.evaluate_folds(
            comp, table, models, [0], batch_size=8, workers=0, tta="hflip", rt=rt, oof=models.parent / f"oof-{amp_on}"
        )
        rules, metrics, _, _ = evaluate.summarize(board, comp, fold_of, 0.2, 0.8)
        chosen.append((str(rt.dtype or "float32").replace("torch.", ""), rules[0].threshold, metrics["dice"]))
    report.check(
        "evaluate under predict's precision vs float32",
        abs(chosen[0][2] - chosen[1][2]) <= 1e-3,
        ", ".join(f"{k}: threshold {t:.3f}, Dice {d:.5f}" for k, t, d in chosen)
        + " (evaluate and predict share this Runtime, so the first is the submission's; target: Dice within 0.001)",
    )


def check_encoder(report: Report, raw: Path, work: Path, s: Sizes) -> None:
    """The recipe's smp encoder U-Net trained like the seed's (bf16, channels_last), from random weights."""
    name = f"train smp U-Net {s.encoder} (bf16, channels_last)"
    if not smp_available():
        report.check(name, None, "segmentation_models_pytorch is not installed here (README: the GPU check's wheels)")
        return
    try:
        model = params.replace(train_params(s).model, encoder=s.encoder, encoder_weights="none")
        p = train_params(s, model=model, lr=RECIPE_LR)
        started = time.perf_counter()
        result = train(raw, work / "train" / "encoder", p, torch.bfloat16)
        finite = all(np.isfinite([r["train_loss"] for r in result.history]))
        report.check(
            name,
            finite and result.best_dice >= s.dice_floor,
            f"{s.epochs} epochs at scale 0.25 in {time.perf_counter() - started:.0f} s, lr {RECIPE_LR}: best val Dice "
            f"{result.best_dice:.4f} (floor {s.dice_floor}), {result.history[-1]['images_per_s']:.0f} img/s",
        )
    except Exception as err:
        report.check(name, False, _failure(err))


# ---------------------------------------------------------------------------------------------- child processes


def run_child(report: Report, name: str, args: list[str], work: Path, s: Sizes, cap: int, torchrun: int = 0) -> None:
    """Run one check in its own process (torchrun for DDP, a time cap for torch.compile) and report its result."""
    result = work / f"child-{args[0]}.json"
    result.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "bench.gpu", "--out", str(work.parent), "--child", *args]
    if s is DRY:
        cmd.append("--dry-run")
    if torchrun:
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={torchrun}"]
        cmd = launcher + ["-m", "bench.gpu"] + cmd[3:]
    started = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=cap)
    except subprocess.TimeoutExpired:
        report.check(name, None, f"stopped at the time cap of {cap} s")
        return
    seconds = time.perf_counter() - started
    if proc.returncode != 0 or not result.is_file():
        lines = (proc.stderr + proc.stdout).strip().splitlines()
        errors = [line for line in lines if re.search(r"\w(Error|Exception): ", line)] or lines[-1:]
        report.check(name, False, f"exit {proc.returncode} after {seconds:.0f} s: {errors[0][-300:] if errors else ''}")
        return
    body = json.loads(result.read_text())
    report.check(name, body["ok"], body["detail"] + f" ({seconds:.0f} s with start-up)")


def child(kind: str, work: Path, s: Sizes) -> None:
    raw = work / "raw"
    if kind == "compile":
        p = train_params(s, compile=True, channels_last=True)
        result = train(raw, work / "train" / "compile", p, torch.bfloat16)
        finite = all(np.isfinite([r["train_loss"] for r in result.history]))
        ok = finite and result.best_dice >= s.dice_floor
        detail = (
            f"{s.epochs} epochs, bf16, channels_last: best val Dice {result.best_dice:.4f} (floor {s.dice_floor}), "
            f"last epoch {result.history[-1]['images_per_s']:.0f} img/s"
        )
    else:  # ddp: one process per GPU under torchrun (gloo processes in the dry run)
        import torch.distributed as dist

        p = train_params(s, epochs=1, warmup_epochs=0)
        result = train(raw, work / "train" / "ddp", p, None if torch.cuda.is_available() else torch.bfloat16)
        ones = torch.ones(1, device=runtime.device(int(os.environ.get("LOCAL_RANK", "0"))))
        dist.all_reduce(ones)
        backend, world = dist.get_backend(), dist.get_world_size()
        if dist.get_rank() != 0:
            return
        ok = int(ones.item()) == world and np.isfinite(result.history[-1]["train_loss"])
        detail = (
            f"{world} process(es) on {backend}: DistributedDataParallel trained one epoch (loss "
            f"{result.history[-1]['train_loss']:.4f}), all_reduce summed to {int(ones.item())}"
        )
    (work / f"child-{kind}.json").write_text(json.dumps({"ok": bool(ok), "detail": detail}))


# ---------------------------------------------------------------------------------------------- throughput


def training_throughput(
    report: Report, label: str, config: dict, size: tuple[int, int], s: Sizes, device: torch.device
) -> None:
    """Images/s of full training steps (bf16 where the card has it, channels_last, AdamW) on batches already on
    the device, at each batch size until one does not fit; reports the largest that fits."""
    rt = training.setup(train_params(s, amp=True, channels_last=True))  # the training stage's own runtime
    dtype = rt.dtype
    model = create_model(**config, in_channels=3, classes=1).to(device, memory_format=rt.memory_format)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    loss_fn = SegmentationLoss(1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    best = None
    for batch in s.batches:
        try:
            x = torch.randn(batch, 3, *size, device=device).contiguous(memory_format=torch.channels_last)
            y = (torch.rand(batch, *size, device=device) > 0.5).to(torch.uint8)
            training.train_one_epoch(model, [(x, y)] * 2, loss_fn, optimizer, scheduler, rt, 1.0, 0)  # warm-up
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            runtime.synchronize(device)
            started = time.perf_counter()
            training.train_one_epoch(model, [(x, y)] * s.steps, loss_fn, optimizer, scheduler, rt, 1.0, 0)
            runtime.synchronize(device)
            rate = batch * s.steps / (time.perf_counter() - started)
            memory = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
            best = (batch, rate, memory)
            del x, y
        except torch.OutOfMemoryError:
            break
        finally:
            if device.type == "cuda":
                torch.cuda.empty_cache()
    if best is None:
        report.figure(f"training {label}", None, "images/s", "not even the smallest batch fits")
        return
    batch, rate, memory = best
    report.figure(
        f"training {label}",
        rate,
        "images/s",
        f"{count_parameters(model) / 1e6:.1f}M parameters at {size[1]}x{size[0]}, batch {batch} (largest that fits"
        + (f" of {list(s.batches)}" if batch == s.batches[-1] else "")
        + f"), {dtype or 'float32'}, channels_last, synthetic batches on the device"
        + (f", peak {memory:.1f} GiB" if memory is not None else ""),
    )


def recipe(s: Sizes) -> tuple[str, dict, params.TrainParams]:
    """(label, model config, train params) of the README's recipe, or the seed U-Net's stand-in without smp."""
    p = train_params(s, scale=s.recipe_scale, crop=list(s.recipe_crop), epochs=2, batch_size=8, lr=RECIPE_LR)
    if smp_available():
        model = params.replace(p.model, encoder=s.encoder, encoder_weights="none")
        label = f"recipe (U-Net {s.encoder}, scale {s.recipe_scale}, crops {s.recipe_crop[0]}x{s.recipe_crop[1]})"
    else:
        model = params.replace(p.model, base_channels=32)
        label = "recipe stand-in without smp (seed U-Net base 32, scale 0.5)"
        p = params.replace(p, scale=0.5, crop=0)
    p = params.replace(p, model=model)
    return label, {"arch": model.arch, **model.kwargs()}, p


def smp_available() -> bool:
    try:
        import segmentation_models_pytorch  # noqa: F401
    except Exception:
        return False
    return True


class Utilisation:
    """Samples the GPU's utilisation every 0.2 s while active (needs NVML; None where unavailable)."""

    def __init__(self, device: torch.device):
        self.samples: list[float] = []
        self.device, self._stop = device, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            try:
                self.samples.append(float(torch.cuda.utilization(self.device)))
            except Exception:
                return

    def __enter__(self):
        if self.device.type == "cuda":
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()

    @property
    def mean(self) -> float | None:
        return float(np.mean(self.samples)) if self.samples else None


def predict_throughput(report: Report, raw: Path, work: Path, s: Sizes, device: torch.device) -> None:
    """The predict and encode stages' code over a Kaggle-like test.zip with the recipe's model and flip TTA."""
    label, _, p = recipe(s)
    result = train(raw, work / "train" / "recipe", p)
    report.figure(
        f"training {label} with data loading",
        result.history[-1]["images_per_s"],
        "images/s",
        f"batch {p.batch_size}, {p.workers} workers, whole epochs of the demo (decoding {s.width}x{s.height} JPEGs "
        f"included); val Dice {result.best_dice:.4f} after 2 epochs from random weights",
    )
    workers = os.cpu_count() or 1
    names = kaggle_like_test_zip(raw, work / "test.zip", s.predict_images)
    archive = ImageArchive(work / "test.zip")
    rt = runtime.for_inference(amp=True)  # predict's own
    dtype, autocast, fmt = rt.dtype, rt.autocast, rt.memory_format
    predictor = load_predictor([work / "train" / "recipe" / "best.pt"], device, fmt)
    pre = predictor.pre
    out = work / "predictions"
    shutil.rmtree(out, ignore_errors=True)  # every shard predicted, whatever an earlier run left
    with Utilisation(device) as util:
        started = time.perf_counter()
        predict.predict_test_set(
            predictor, archive, names, out, competition="carvana-image-masking-challenge", rt=rt, tta="hflip",
            shard_size=500, batch_size=s.predict_batch, workers=workers,
        )  # fmt: skip
        predict_s = time.perf_counter() - started
    started = time.perf_counter()
    written = encode.write(out, Carvana, Carvana.format_for(names), [Rule(0.5)], work / "submission.csv.gz", jobs=-1)
    encode_s = time.perf_counter() - started
    n = len(names)
    total = predict_s + encode_s
    report.figure(
        "predict + encode end to end",
        n / total,
        "images/s",
        f"{n} JPEGs of {s.width}x{s.height} from a stored zip, model {pre.size[1]}x{pre.size[0]}, flip TTA, "
        f"{dtype or 'float32'}, batch {s.predict_batch}, {workers} workers: predict {predict_s:.1f} s + encode "
        f"{encode_s:.1f} s ({written['rows']} rows)",
    )
    report.figure(
        "100,064 test images (extrapolated)",
        KAGGLE_TEST_IMAGES / (n / total) / 60,
        "minutes",
        "goal: under 10 minutes with TTA on one H100",
    )
    report.figure("GPU utilisation during predict", util.mean, "%", "mean of 0.2 s samples (NVML)")

    # where the time goes, each part alone
    loader = torch.utils.data.DataLoader(
        preprocess.ImageDataset(archive, names[: min(n, 1000)], pre), batch_size=s.predict_batch, num_workers=workers
    )
    started = time.perf_counter()
    seen = sum(len(batch[0]) for batch in loader)
    report.figure(
        "JPEG decoding (draft mode, DataLoader)",
        seen / (time.perf_counter() - started),
        "images/s",
        f"{workers} workers, to {pre.size[1]}x{pre.size[0]}",
    )
    host = torch.zeros(s.predict_batch, *pre.size, pre.channels, dtype=torch.uint8)
    host = host.pin_memory() if device.type == "cuda" else host
    x = pre.normalize(host.to(device).permute(0, 3, 1, 2)).contiguous(memory_format=fmt)
    report.figure("host to device", _per_image_ms(lambda: host.to(device, non_blocking=True), device, s), "ms/image")
    report.figure("model (flip TTA)", _per_image_ms(lambda: predictor(x, "hflip", autocast), device, s), "ms/image")
    probs = predictor(x, "hflip", autocast)
    report.figure("device to host (uint8)", _per_image_ms(lambda: postprocess.to_uint8(probs), device, s), "ms/image")
    report.figure("encode (up-sample + RLE + gzip, all cores)", encode_s / n * 1e3, "ms/image")
    decode_alternatives(report, archive, names, pre, s, device)


def _per_image_ms(fn, device: torch.device, s: Sizes, repeat: int = 5) -> float:
    fn()
    runtime.synchronize(device)
    started = time.perf_counter()
    for _ in range(repeat):
        fn()
    runtime.synchronize(device)
    return (time.perf_counter() - started) / (repeat * s.predict_batch) * 1e3


def decode_alternatives(report: Report, archive: ImageArchive, names: list[str], pre, s: Sizes, device) -> None:
    """Does decoding starve the GPU? More workers, and nvJPEG through torchvision where it is installed."""
    cores = os.cpu_count() or 1
    subset = names[:600]
    for workers in sorted({max(1, cores // 2), 2 * cores}):
        loader = torch.utils.data.DataLoader(
            preprocess.ImageDataset(archive, subset, pre), batch_size=s.predict_batch, num_workers=workers
        )
        started = time.perf_counter()
        seen = sum(len(batch[0]) for batch in loader)
        report.figure(f"JPEG decoding with {workers} workers", seen / (time.perf_counter() - started), "images/s")
    try:
        from torchvision.io import decode_jpeg
    except Exception as err:  # not installed, or built for another torch
        report.figure("JPEG decoding on the GPU (nvJPEG)", None, "images/s", f"torchvision unavailable: {err}")
        return
    if device.type != "cuda":
        report.figure("JPEG decoding on the GPU (nvJPEG)", None, "images/s", "no GPU")
        return
    encoded = [torch.frombuffer(bytearray(archive.read(n)), dtype=torch.uint8) for n in subset[:256]]

    def gpu_decode():
        for start in range(0, len(encoded), 32):
            images = decode_jpeg(encoded[start : start + 32], device=device)
            batch = torch.stack(images).float()
            torch.nn.functional.interpolate(batch, size=pre.size, mode="bilinear", antialias=True)

    gpu_decode()
    runtime.synchronize(device)
    started = time.perf_counter()
    gpu_decode()
    runtime.synchronize(device)
    report.figure(
        "JPEG decoding on the GPU (nvJPEG)",
        len(encoded) / (time.perf_counter() - started),
        "images/s",
        "torchvision.io.decode_jpeg(device='cuda') at full size + antialiased resize, batches of 32; the host "
        "still reads the zip",
    )


def _failure(err: BaseException) -> str:
    last = traceback.format_exception_only(type(err), err)[-1].strip()
    return f"raised {last[:300]}"


# ---------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for report.json, report.md and work files")
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes on whatever device, in seconds")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    s = DRY if args.dry_run else FULL
    work = args.out / "work"
    if args.child:
        child(args.child[0], work, s)
        return 0
    device = runtime.device(0)
    if device.type != "cuda" and not args.dry_run:
        print("no CUDA device: run with --dry-run for the CPU rehearsal", file=sys.stderr)
        return 2
    report = Report(args.out, {**describe_device(), "dry_run": args.dry_run})
    print(f"GPU check on {report.header['device']} (torch {torch.__version__}); report in {args.out}", flush=True)
    for stale in ("train", "resume", "predictions"):  # every check trains from scratch; the demo is kept
        shutil.rmtree(work / stale, ignore_errors=True)
    started = time.perf_counter()
    raw = render_demo(work, s)
    report.figure("demo rendered", time.perf_counter() - started, "s", f"{s.width}x{s.height}, in {work}")

    print("== training on the device", flush=True)
    bf16_model = check_training(report, raw, work, s, device)
    check_resume(report, raw, work, s)
    run_child(report, "DDP under torchrun", ["ddp"], work, s, s.child_cap_s, torchrun=max(1, torch.cuda.device_count()))
    check_prediction(report, raw, bf16_model, device, s)
    check_encoder(report, raw, work, s)

    print("== throughput", flush=True)
    seed_size = (round(s.height * s.throughput_scale), round(s.width * s.throughput_scale))
    seed_config = {"arch": "unet", "base_channels": s.seed_base, "depth": 4, "bilinear": True}
    training_throughput(report, f"seed U-Net (base {s.seed_base}) at scale 0.5", seed_config, seed_size, s, device)
    label, config, p = recipe(s)
    training_throughput(report, label, config, p.crop_size or seed_size, s, device)
    predict_throughput(report, raw, work, s, device)
    report.write()
    failed = [c["check"] for c in report.checks if c["status"] == "FAIL"]
    print(
        f"done in {time.perf_counter() - report.started:.0f} s; {len(failed)} failed check(s); {args.out / 'report.md'}"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
