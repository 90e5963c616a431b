"""Shared set-up for the benches: demo data at Kaggle's size, the model, prediction, honest timing."""

from __future__ import annotations

import platform
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from pipeline import params, paths, runtime
from pipeline.competitions import Competition, open_competition
from pipeline.competitions.archive import ImageArchive
from pipeline.competitions.carvana import SLUG, demo
from pipeline.data import preprocess
from pipeline.models.factory import create_model
from pipeline.planning import resolve
from pipeline.prediction import predict, shards
from pipeline.prediction.predictor import Predictor, load_predictor

# What the plan chooses for the Carvana demo on a CPU (tests/test_planning.py checks it): the values the benches and
# the tests that train or predict in their own process use for params.yaml's `auto`, without a plan stage.
CARVANA_PLAN = {
    "split.group": "prefix", "train.scale": 0.125, "train.model.base_channels": 8, "train.batch_size": 8,
    "train.lr": 0.003, "train.epochs": 8, "train.bce_weight": 1.0, "train.dice_weight": 1.0,
    "train.augment.hflip": 0.5, "train.augment.vflip": 0.0, "train.augment.saturation": 0.2,
    "train.augment.hue": 0.03, "evaluate.threshold_min": 0.2, "evaluate.threshold_max": 0.8,
    "evaluate.empty_rule": False, "predict.tta": "hflip",
}  # fmt: skip


def demo_params(*sections: str, path: str | Path = "params.yaml", overrides=()) -> dict:
    """params.yaml's sections with every `auto` as the Carvana demo's plan has it."""
    return resolve.resolve(params.load(*sections, path=path, overrides=list(overrides)), CARVANA_PLAN)


def demo_competition(test_images: int = 64, root: Path | None = None) -> Path:
    """A 1918x1280 demo competition with at least `test_images` distinct test images: data/raw when it
    holds such a demo, else one rendered into a temporary folder (16 views per test car)."""
    raw = paths.RAW
    stamp = raw / "SOURCE.json"
    if root is None and stamp.is_file() and '"demo"' in stamp.read_text():
        if sum(1 for _ in open(raw / "sample_submission.csv")) - 1 >= test_images:
            return raw
    root = root or Path(tempfile.mkdtemp(prefix="carvana-bench-"))
    demo.generate(
        root / "raw",
        root / "truth",
        seed=1,
        train=2,
        test=-(-test_images // demo.VIEWS),
        width=1918,
        height=1280,
    )
    return root / "raw"


def open_demo(raw: Path) -> Competition:
    return open_competition(raw, SLUG)


def machine() -> str:
    return (
        f"{platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}, "
        f"device {'cuda: ' + torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu'}"
    )


def best_of(fn, repeat: int) -> float:
    """Best wall time of `repeat` calls, in seconds."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def load_model(path: Path) -> tuple[nn.Module, preprocess.Preprocess]:
    if path.is_file():
        predictor = load_predictor([path])
        return predictor.models[0], predictor.pre
    print(
        f"{path} not found: using an untrained model with params.yaml's architecture (run `dvc repro train` for "
        f"realistic masks)"
    )
    t = demo_params("train")["train"]
    model = create_model(t.model.arch, in_channels=3, classes=1, **t.model.kwargs()).eval()
    return model, preprocess.Preprocess.for_data((1280, 1918), t.scale, 3)


def predict_on_cpu(
    model: nn.Module,
    pre: preprocess.Preprocess,
    archive: ImageArchive,
    names: list[str],
    out: Path,
    shard_size: int,
    tta: str = "none",
) -> dict:
    """The predict stage's code on one bare model (batches of 8, 2 workers, the stage's Runtime for the default
    predict.amp: its precision and memory format, which it gives the model in place as the stage does when loading
    it); returns the manifest."""
    rt = runtime.for_inference(True)
    predictor = Predictor([model.to(memory_format=rt.memory_format)], pre, 1, ["background", "car"], ["bench"], {})
    settings = dict(
        competition="carvana-image-masking-challenge", rt=rt, tta=tta, shard_size=shard_size, batch_size=8, workers=2
    )
    predict.predict_test_set(predictor, archive, names, out, **settings)
    return shards.check_manifest(out)


def encode_carvana(predictions: Path, names: list[str], out: Path, threshold: float = 0.5, jobs: int = -1) -> dict:
    """encode.write for a Carvana-layout submission of these test images (the encode stage's work)."""
    from pipeline.competitions.carvana import Carvana
    from pipeline.masks.postprocess import Rule
    from pipeline.submission import encode

    return encode.write(predictions, Carvana, Carvana.format_for(names), [Rule(threshold)], out, jobs)
