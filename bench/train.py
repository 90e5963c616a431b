"""Training throughput at the demo settings against the seed's training defaults, in one run.

    python -m bench.train [--steps 24]

Both use the same model (params.yaml's train.model), scale, data (demo JPEGs read from the zip with
augmentation) and optimiser step; they differ in what the seed fixed: batch 1, no channels_last, no
DataLoader workers. Reported: training images per second, after a warm-up.
"""

from __future__ import annotations

import argparse
import itertools
import time

import torch
from torch.utils.data import DataLoader

from bench.common import demo_competition, demo_params, machine, open_demo
from pipeline import params
from pipeline.data import datasets, preprocess
from pipeline.models.factory import create_model
from pipeline.models.losses import SegmentationLoss


def images_per_second(comp, p: params.TrainParams, steps: int) -> float:
    names = comp.train_names
    pre = preprocess.Preprocess.for_data((1280, 1918), p.scale, 3)
    dataset = datasets.TrainDataset(comp, names, pre, p.augment, p.seed)
    loader = DataLoader(dataset, batch_size=p.batch_size, shuffle=True, num_workers=p.workers)
    fmt = torch.channels_last if p.channels_last else torch.contiguous_format
    model = create_model(p.model.arch, in_channels=3, classes=1, **p.model.kwargs()).to(memory_format=fmt).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=p.lr)
    loss_fn = SegmentationLoss(1)
    batches = itertools.chain.from_iterable(itertools.repeat(loader))
    seen, start = 0, None
    for step, (x, y) in enumerate(batches):
        if step == 3:  # warm-up done: workers started, allocator settled
            seen, start = 0, time.perf_counter()
        if step == steps + 3:
            break
        loss = loss_fn(model(x.contiguous(memory_format=fmt)), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        seen += len(x)
    return seen / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=24, help="timed steps of the demo settings")
    args = parser.parse_args()
    comp = open_demo(demo_competition())
    p = demo_params("train")["train"]
    seed_style = params.replace(p, batch_size=1, channels_last=False, workers=0)
    ours = images_per_second(comp, p, args.steps)
    seed = images_per_second(comp, seed_style, args.steps * p.batch_size)
    print(f"machine: {machine()}")
    print(
        f"model {p.model.arch} base {p.model.base_channels}, scale {p.scale} ({round(1918 * p.scale)}x"
        f"{round(1280 * p.scale)}), demo JPEGs from the zip, augmentation on"
    )
    print(f"seed defaults (batch 1, contiguous, no workers)        : {seed:6.1f} images/s")
    print(f"demo settings (batch {p.batch_size}, channels_last, {p.workers} workers)    : {ours:6.1f} images/s")
    print(f"ratio                                                  : {ours / seed:6.2f}x")


if __name__ == "__main__":
    main()
