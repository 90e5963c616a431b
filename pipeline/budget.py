"""What a run will cost, before it runs: images x passes, the time from a short timed warm-up on this device, and
the disk its outs take.

Train and predict print it before their long work (predict refuses to start when its shards cannot fit);
`kseg budget` prints it for any params without running anything. The counts are data/raw's when it holds the
competition, else the demo's (download.source demo) or the real competition's. The times are per-image figures
measured here (a few training steps and forward passes of the configured model at its input size, and the
decoding of a few images) multiplied out: on a GPU, decoding overlaps the model (the slower of the two counts);
on a CPU they share the cores (the two add up).
"""

from __future__ import annotations

import io
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pipeline import params as P
from pipeline import runtime
from pipeline.competitions import Competition, CompetitionError, competition_class, open_competition
from pipeline.data.preprocess import Preprocess
from pipeline.errors import UserError
from pipeline.images import Size, channels_of, decode_image
from pipeline.masks.scoring import Scoreboard
from pipeline.models import checkpoint
from pipeline.models.factory import count_parameters, create_model
from pipeline.prediction.inference import TTA_SETS
from pipeline.runtime import Runtime

CPU_PIXELS = 256 * 256  # on a CPU, larger inputs are timed at this many pixels and scaled by their pixel count
TIMED_PIXELS = 8_000_000  # images decoded or scored beyond this are timed smaller and scaled by their pixel count
CHECKPOINT_COPIES = 5  # per fold: best.pt in models/ and in checkpoints/, last.pt with AdamW's two moments (3x)
# bytes of a shard member per map byte, by map pixels: the demo's shards at scale 1/8 (deflate) and 1.0 (bzip2), by
# bench.shards; small maps hold fewer flat runs, so they compress less
SHARD_RATIOS = ((240 * 160, 0.205), (1918 * 1280, 0.055))


# Kaggle's machines, for a kernel's run time on the hidden test set. Assumed from Kaggle's notebook specifications
# (kaggle.com/docs/notebooks; check them there, they change): 4 CPU cores in a CPU session and beside a GPU; the GPU a
# Tesla T4, 65 TFLOPS of fp16 on tensor cores and 8.1 of fp32 (NVIDIA's T4 datasheet), of which a U-Net's
# convolutions sustain about a quarter (an assumption, the error of this estimate: measure a kernel version).
KAGGLE_CORES = 4
T4_FLOPS = {"amp": 65e12 / 4, "float32": 8.1e12 / 4}
KERNEL_START_S = 120.0  # a kernel's start on Kaggle: the session, pip install from the bundle, imports, the models


class DiskError(UserError):
    """Not enough free disk for a stage's outs; nothing was started."""


class MemoryBudgetError(UserError):
    """A batch that does not fit the device's memory; nothing was started."""


@dataclass(frozen=True)
class Data:
    """What the run reads: image counts, the images' size, and where the figures come from."""

    train: int
    test: int
    size: Size  # (height, width)
    channels: int
    outputs: int  # model output channels
    source: str
    sample: bytes | None  # one real image to time decoding on, when there is one


@dataclass(frozen=True)
class Cost:
    stage: str
    work: str  # images x passes, in words
    seconds: float
    disk: int  # bytes of the stage's outs
    how: str  # the per-image figures the estimate multiplies

    def __str__(self) -> str:
        return f"{self.stage}: {self.work}: ~{duration(self.seconds)}, outs ~{size_of(self.disk)} ({self.how})"


def duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def size_of(n: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n:.0f} B"


def data_of(raw: Path, download: P.DownloadParams) -> Data:
    """The counts and image size of data/raw when it holds this competition, else of what download will make."""
    try:
        return competition_data(open_competition(raw, download.competition, download.hq), str(raw))
    except (CompetitionError, OSError, IndexError):
        pass
    cls = competition_class(download.competition, download.source)
    if download.source == "demo":
        d = download.demo
        size = (d.height, d.width) if d.width else cls.native_size
        return Data(
            d.train * 16, d.test * 16, size, 3, cls.demo_outputs(d.multiclass), "the demo, not rendered yet", None
        )
    train, test = cls.kaggle_counts
    return Data(train, test, cls.native_size, 3, cls.kaggle_outputs, f"Kaggle's {cls.title}", None)


def competition_data(comp: Competition, source: str = "data/raw") -> Data:
    """What the run reads from an opened competition folder."""
    first = comp.train_names[0]
    sample = comp.read_image(first)
    channels = channels_of(sample, first)
    _, size = decode_image(sample, first, channels, (8, 8))
    return Data(len(comp.train_names), len(comp.test_names), size, channels, comp.channels, source, sample)


def _jpeg(size: Size) -> bytes:
    """A stand-in photo of `size` for timing the decoding when there is no real image yet: smooth shapes and
    noise, about as costly to decode as a photo."""
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w]
    rng = np.random.default_rng(0)
    base = (127 + 100 * np.sin(xx / 37.0) * np.cos(yy / 53.0))[..., None] + rng.normal(0, 12, (h, w, 3))
    buf = io.BytesIO()
    Image.fromarray(np.clip(base, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _timed(fn, device: torch.device, warmup: int, repeat: int) -> float:
    """Seconds a call of `fn` takes; a batch that does not fit the GPU's memory stops in one line, as it would stop
    the stage after its start (a GPU times the real size)."""
    try:
        for _ in range(warmup):
            fn()
        runtime.synchronize(device)
        started = time.perf_counter()
        for _ in range(repeat):
            fn()
        runtime.synchronize(device)
    except torch.OutOfMemoryError:
        raise MemoryBudgetError(
            f"a batch does not fit in the memory of {device}: lower train.batch_size (train.accumulate keeps the "
            f"step's size) or predict.batch_size, or train.scale, or train on crops (train.crop)"
        ) from None
    return (time.perf_counter() - started) / repeat


def _shrunk(sizes: list[Size]) -> tuple[list[Size], float]:
    """`sizes` scaled down together until the largest has TIMED_PIXELS, and the factor that multiplies a time taken
    on them (decoding, resizing and scoring are linear in the pixels): the answer in seconds and a bounded memory,
    however absurd the size asked about."""
    most = max(h * w for h, w in sizes)
    if most <= TIMED_PIXELS:
        return sizes, 1.0
    f = (TIMED_PIXELS / most) ** 0.5
    small = [(max(1, round(h * f)), max(1, round(w * f))) for h, w in sizes]
    return small, most / max(h * w for h, w in small)


def decoding_seconds(data: Data, size: Size) -> float:
    """Seconds to decode one image and resize it to `size` (the model's input)."""
    (source, size), factor = _shrunk([data.size, size])
    sample = data.sample if data.sample and factor == 1.0 else _jpeg(source)
    return _timed(lambda: decode_image(sample, "sample", data.channels, size), torch.device("cpu"), 1, 4) * factor


def _model(p: P.TrainParams, data: Data, rt: Runtime) -> torch.nn.Module:
    config = checkpoint.model_config(p.model.arch, data.channels, data.outputs, p.model.kwargs())
    return create_model(**config).to(rt.device, memory_format=rt.memory_format)  # timing only: random weights


def _batch(rt: Runtime, wanted: int) -> int:
    return wanted if rt.device.type == "cuda" else min(wanted, 2)  # a CPU's time per image hardly depends on it


def _timing_shape(shape: tuple[int, int, int, int], rt: Runtime) -> tuple[tuple[int, int, int, int], float]:
    """(the shape to time, the factor to multiply its time by): on a CPU, an input of more than CPU_PIXELS is timed
    at about CPU_PIXELS (multiples of 32, the same aspect) and scaled by the pixel count, as a convolution's cost
    is; a GPU times the real size (its memory and occupancy are part of the answer)."""
    n, c, h, w = shape
    if rt.device.type == "cuda" or h * w <= CPU_PIXELS:
        return shape, 1.0
    f = (CPU_PIXELS / (h * w)) ** 0.5
    small = (max(32, round(h * f / 32) * 32), max(32, round(w * f / 32) * 32))
    return (n, c, *small), h * w / (small[0] * small[1])


def step_seconds(model: torch.nn.Module, rt: Runtime, shape: tuple[int, int, int, int]) -> float:
    """Seconds per image of a training step (forward, loss, backward, AdamW) on a batch of `shape`."""
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    shape, factor = _timing_shape(shape, rt)
    x = torch.randn(*shape, device=rt.device).contiguous(memory_format=rt.memory_format)

    def step():
        optimizer.zero_grad(set_to_none=True)
        with rt.autocast():
            out = model(x)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(out.float(), torch.zeros_like(out.float()))
        rt.scaler.scale(loss).backward()
        rt.scaler.step(optimizer)
        rt.scaler.update()

    warmup = 2 if rt.device.type == "cuda" else 1
    return _timed(step, rt.device, warmup, 3) / shape[0] * factor


@torch.no_grad()
def forward_seconds(forward, rt: Runtime, shape: tuple[int, int, int, int]) -> float:
    """Seconds per image of `forward` (a model, or a predictor with its folds and TTA) on a batch of `shape`, under
    the Runtime's precision."""
    shape, factor = _timing_shape(shape, rt)
    x = torch.randn(*shape, device=rt.device).contiguous(memory_format=rt.memory_format)

    def run():
        with rt.autocast():
            forward(x)

    return _timed(run, rt.device, 1, 2 if rt.device.type == "cpu" else 5) / shape[0] * factor


def scoring_seconds(data: Data, small: Size) -> float:
    """Seconds per image of validation's scoring: the model-size map up-sampled to the image's size and scored at
    every cut, as training's validation does after each forward pass."""
    (size, small), factor = _shrunk([data.size, small])
    board = Scoreboard(data.outputs)
    probs = torch.rand(data.outputs, *small)
    full = np.zeros(size, np.uint8)
    return _timed(lambda: board.add("timing", probs, full), torch.device("cpu"), 1, 2) * factor


def _per_image(model_s: float, decode_s: float, rt: Runtime, workers: int) -> float:
    """A DataLoader's workers decode beside the model: on a GPU the slower of the two, on a CPU their sum."""
    decode = decode_s / max(1, workers)
    return max(model_s, decode) if rt.device.type == "cuda" else model_s + decode


def train_cost(p: dict, data: Data, rt: Runtime, sizes: list[tuple[int, int]] | None = None) -> Cost:
    """What the train stage will do with params `p` (train, split) on `data`: `sizes` gives each trained fold's
    (training, validation) image counts as the split made them; without a split yet, they are estimated."""
    t, split = p["train"], p["split"]
    pre = Preprocess.for_data(data.size, t.scale, data.channels)
    crop = t.crop_size or pre.size
    if sizes is None:
        n_val = round(data.train / split.folds)
        sizes = [(data.train - n_val, n_val)] * len(split.validation_folds())
    folds = len(sizes)
    model = _model(t, data, rt)
    batch = _batch(rt, t.batch_size)
    step = step_seconds(model, rt, (batch, data.channels, *crop))
    forward = forward_seconds(model.eval(), rt, (batch, data.channels, *pre.size))
    decode = decoding_seconds(data, pre.size)
    forward += scoring_seconds(data, pre.size)
    train, val = _per_image(step, decode, rt, t.workers), _per_image(forward, decode, rt, t.workers)
    seconds = sum(t.epochs * (n_train * train + n_val * val) for n_train, n_val in sizes)
    return Cost(
        "train",
        f"{folds} fold(s) x {t.epochs} epochs x {_counts([n for n, _ in sizes])} images (+ "
        f"{_counts([n for _, n in sizes])} validation) at {crop[1]}x{crop[0]}",
        seconds / rt.world,
        folds * CHECKPOINT_COPIES * 4 * count_parameters(model),
        f"a step {step * 1e3:.0f} ms/image, a validation pass and its scoring {forward * 1e3:.0f} ms/image, decoding "
        f"{decode * 1e3:.0f} ms/image on {t.workers} worker(s)",
    )


def _counts(counts: list[int]) -> str:
    """154, or 153-154 when the folds differ."""
    low, high = min(counts), max(counts)
    return f"{low:,}" if low == high else f"{low:,}-{high:,}"


def shard_ratio(pixels: int) -> float:
    """Compressed over raw bytes of a map of this many pixels: log-log between the measured points, flat beyond."""
    (p0, r0), (p1, r1) = SHARD_RATIOS
    x = min(max(np.log(pixels / p0) / np.log(p1 / p0), 0.0), 1.0)
    return float(r0 * (r1 / r0) ** x)


def predict_cost(data: Data, pre: Preprocess, folds: int, pr: P.PredictParams, per_image: float, rt: Runtime) -> Cost:
    """What the predict stage will do: `per_image` is the seconds of every pass an image gets (folds x TTA)."""
    views = len(TTA_SETS[pr.tta])
    passes, tta = folds * views, f" x {pr.tta} TTA" if views > 1 else ""
    decode = decoding_seconds(data, pre.size)
    each = round(data.outputs * pre.size[0] * pre.size[1] * shard_ratio(pre.size[0] * pre.size[1]))
    return Cost(
        "predict",
        f"{data.test:,} images x {passes} passes ({folds} fold(s){tta}) at {pre.size[1]}x{pre.size[0]}",
        data.test * _per_image(per_image, decode, rt, pr.workers) / rt.world,
        data.test * each,
        f"a pass {per_image / passes * 1e3:.0f} ms/image, decoding {decode * 1e3:.0f} ms/image on {pr.workers} "
        f"worker(s); shards ~{size_of(each)}/image",
    )


def describe(data: Data, rt: Runtime) -> str:
    where = torch.cuda.get_device_name(rt.device) if rt.device.type == "cuda" else f"CPU ({os.cpu_count()} cores)"
    dtype = str(rt.dtype).replace("torch.", "") if rt.dtype else "float32"
    return (
        f"budget on {where}, {dtype}: {data.train:,} train and {data.test:,} test images of "
        f"{data.size[1]}x{data.size[0]} ({data.source})"
    )


def ensure_room(folder: Path, need: int, what: str) -> None:
    """Refuse, in one line, to start work whose outs cannot fit on `folder`'s disk."""
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free
    if need > free:
        raise DiskError(
            f"not enough disk for {what} in {folder}: needs ~{size_of(need)}, {size_of(free)} free; free space, "
            f"or lower train.scale"
        )


def report(costs: list[Cost], data: Data, rt: Runtime) -> str:
    lines = [describe(data, rt), *map(str, costs)]
    if any(c.stage == "predict" for c in costs):
        lines.append(
            "  (DVC keeps as much again in .dvc/cache when it commits data/predictions, unless its cache.type "
            "links: `dvc config cache.type hardlink`)"
        )
    return "\n".join(lines)


def for_params(p: dict, raw: Path) -> str:
    """The train and predict costs of params `p` (every section), each timed under its stage's Runtime; runs
    nothing else."""
    data = data_of(raw, p["download"])
    t, pr = p["train"], p["predict"]
    train = train_cost(p, data, runtime.for_training(t.amp, t.channels_last))
    rt = runtime.for_inference(pr.mixed_precision)
    pre = Preprocess.for_data(data.size, t.scale, data.channels)
    folds = len(p["split"].validation_folds())
    model = _model(t, data, rt).eval()
    one_pass = forward_seconds(model, rt, (_batch(rt, pr.batch_size), data.channels, *pre.size))
    predict = predict_cost(data, pre, folds, pr, folds * len(TTA_SETS[pr.tta]) * one_pass, rt)
    return report([train, predict], data, rt)


def flops(forward, shape: tuple[int, int, int, int]) -> float:
    """Floating-point operations of `forward` (a predictor with its folds and TTA) on one input of `shape`, counted
    by torch's FLOP counter on the CPU (convolutions and matrix products: the bulk of a U-Net)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        forward(torch.zeros(shape))
    return float(counter.get_total_flops()) / shape[0]


def encoding_seconds(comp: type[Competition], data: Data, small: Size, rules: list) -> float:
    """Seconds per image, on one core, of the submission's rows from a map at the model size: up-sampling to the
    image's size, the rules, the run-length text."""
    rng = np.random.default_rng(0)
    probs = rng.integers(0, 256, (data.outputs, *small), dtype=np.uint8)
    classes = list(range(data.outputs))
    return _timed(lambda: comp.texts(probs, data.size, rules, classes), torch.device("cpu"), 1, 3)


@dataclass(frozen=True)
class KernelCost:
    """A kernel's estimated run time on Kaggle's hidden test set, on a CPU and on a GPU, and how it was estimated."""

    images: int
    cpu_s: float
    gpu_s: float
    how: str

    def on(self, gpu: bool) -> float:
        return self.gpu_s if gpu else self.cpu_s


def kernel_cost(comp: type[Competition], data: Data, forward, pre: Preprocess, amp: bool, rules: list) -> KernelCost:
    """What a kernel will take on Kaggle for the competition's hidden test set (`kaggle_counts`), from figures
    measured here: `forward` (every model and TTA view of the bundle on a batch) in float32 on this CPU (a Kaggle CPU
    computes float32; per core, as fast as this one) and its FLOPs (at a T4's sustained rate), the decoding and the
    encoding of an image on one core (Kaggle's cores share them), plus a start of a few minutes."""
    images = comp.kaggle_counts[1] or data.test
    shape = (1, pre.channels, *pre.size)
    cpu = runtime.for_inference(False)
    model_core_s = forward_seconds(forward, cpu, shape) * (os.cpu_count() or 1)
    decode_s, encode_s = decoding_seconds(data, pre.size), encoding_seconds(comp, data, pre.size, rules)
    work_s = decode_s + encode_s
    gpu_model_s = flops(forward, shape) / T4_FLOPS["amp" if amp else "float32"]
    cpu_s = KERNEL_START_S + images * (model_core_s + work_s) / KAGGLE_CORES
    # on a GPU the workers decode while the card computes; encoding follows, on the cores
    gpu_s = KERNEL_START_S + images * (max(gpu_model_s, decode_s / KAGGLE_CORES) + encode_s / KAGGLE_CORES)
    how = (
        f"{images:,} images; here a float32 forward pass set takes {model_core_s * 1e3:.0f} core-ms an image, decoding "
        f"and encoding {work_s * 1e3:.0f} core-ms; a T4 {gpu_model_s * 1e3:.1f} ms; {KAGGLE_CORES} Kaggle cores"
    )
    return KernelCost(images, cpu_s, gpu_s, how)


class EpochTimer:
    """Seconds of one epoch of one fold of given train params on this machine, for the plan: the budget's timed
    training steps, validation passes and decoding (`train_cost`), measured under train's Runtime."""

    def __init__(self, comp: Competition, split: P.SplitParams, t: P.TrainParams):
        self.comp, self.data, self.rt = comp, None, None  # made when first timed: a plan may only ask the device
        self.split, self.train = P.replace(split, fold=0), t
        dev = runtime.device()
        self.device = (
            dev.type,
            torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"CPU ({os.cpu_count()} cores)",
        )

    def __call__(self, t: P.TrainParams) -> float:
        if self.data is None:
            self.data = competition_data(self.comp)
            self.rt = runtime.for_training(self.train.amp, self.train.channels_last)
        return train_cost({"train": t, "split": self.split}, self.data, self.rt).seconds
