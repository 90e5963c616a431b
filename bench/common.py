"""Shared set-up for the benches: demo data at Kaggle's size, and honest timing."""

from __future__ import annotations

import platform
import tempfile
import time
from pathlib import Path

import torch

from pipeline import competition, demo


def demo_competition(test_images: int = 64, root: Path | None = None) -> Path:
    """A 1918x1280 demo competition with at least `test_images` distinct test images: data/raw when it
    holds such a demo, else one rendered into a temporary folder (16 views per test car)."""
    raw = Path("data/raw")
    stamp = raw / "SOURCE.json"
    if root is None and stamp.is_file() and '"demo"' in stamp.read_text():
        if sum(1 for _ in open(raw / "sample_submission.csv")) - 1 >= test_images:
            return raw
    root = root or Path(tempfile.mkdtemp(prefix="carvana-bench-"))
    demo.generate(
        root / "raw",
        root / "truth",
        seed=1,
        train_cars=2,
        test_cars=-(-test_images // demo.VIEWS),
        width=1918,
        height=1280,
    )
    return root / "raw"


def open_demo(raw: Path) -> competition.Competition:
    return competition.open_competition(raw, hq=False)


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
