"""smp encoders against the seed's U-Net on the demo: parameters, validation Dice and training speed, one run.

    python -m bench.encoders [--encoders resnet18 resnet34] [--epochs 12]

Each model trains on fold 0 of data/split.csv with params.yaml's train section (same epochs, scale, batch,
lr and seed), only the encoder changed; encoders start from random weights (`encoder_weights: none`), as no
download is possible on machines without network. Needs the demo in data/raw (`dvc repro split`).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd

from bench.common import machine
from pipeline import params, paths, training
from pipeline.competitions import open_competition
from pipeline.models.factory import count_parameters, create_model
from pipeline.planning import resolve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--encoders", nargs="+", default=["resnet18", "resnet34"])
    parser.add_argument("--epochs", type=int, default=None, help="default: params.yaml's train.epochs")
    args = parser.parse_args()
    p_all = resolve.resolved(params.load(), paths.PLAN, "train")
    base, d = p_all["train"], p_all["download"]
    base = params.replace(base, epochs=args.epochs or base.epochs)
    comp = open_competition(paths.RAW, d.competition, d.hq)
    table = pd.read_csv("data/split.csv")
    work = Path(tempfile.mkdtemp(prefix="carvana-bench-encoders-"))
    rows = []
    for encoder in ["none", *args.encoders]:
        model = params.replace(base.model, encoder=encoder, encoder_weights="none")
        p = params.replace(base, model=model)
        size = count_parameters(create_model(p.model.arch, in_channels=3, classes=1, **p.model.kwargs()))
        started = time.perf_counter()
        result = training.train_fold(p, training.setup(p), comp, table, 0, work / encoder, progress=False)
        seconds = time.perf_counter() - started
        speed = sum(r["images_per_s"] for r in result.history) / len(result.history)
        label = f"seed U-Net (base {p.model.base_channels})" if encoder == "none" else f"U-Net {encoder}"
        rows.append((label, size, result.best_dice, result.best_epoch, speed, seconds))
        print(
            f"{label}: best val Dice {result.best_dice:.5f} at epoch {result.best_epoch}, {speed:.1f} img/s", flush=True
        )
    print(f"machine: {machine()}")
    print(
        f"demo fold 0, {base.epochs} epochs at scale {base.scale}, batch {base.batch_size}, lr {base.lr}, random init"
    )
    print(f"{'model':26}{'params':>10}{'val Dice':>10}{'epoch':>7}{'train img/s':>13}{'total s':>9}")
    for label, size, dice, epoch, speed, seconds in rows:
        print(f"{label:26}{size / 1e6:9.1f}M{dice:10.5f}{epoch:7d}{speed:13.1f}{seconds:9.0f}")


if __name__ == "__main__":
    main()
