"""Predict + encode at 1918x1280: the batched pipeline against a per-image loop written the seeds' way.

    python -m bench.predict [--images 1024] [--tta] [--model models/fold0/best.pt]

The per-image loop is the seed's predict.py plus the standard RLE snippet: decode the full JPEG,
resize, normalise, forward one image, up-sample the probabilities to full size with F.interpolate,
threshold, encode, write a gzip CSV line. Ours is the predict and encode stages' code (DataLoader
workers, draft-mode decoding, batches, the stage's memory format, uint8 shards, up-sampling + RLE of the
outline cells only). Same network and weights (loaded once for each path, as each program would), same scale;
`--tta` adds the horizontal flip to both (the seed's loop then averages a flipped second pass, as a competitor
would add it). Each path runs twice: with the model, then with a replay of its recorded outputs, which leaves
everything but the model; the difference is the model's time.
"""

from __future__ import annotations

import argparse
import gzip
import io
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from bench.common import demo_competition, encode_carvana, load_model, machine, open_demo, predict_on_cpu
from bench.rle import standard_snippet
from pipeline import paths
from pipeline.competitions.carvana import Carvana
from pipeline.masks.scoring import dice
from pipeline.submission import encode


class Recorder(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model, self.outputs = model, []

    def forward(self, x):
        out = self.model(x)
        self.outputs.append(out)
        return out


class Replay(nn.Module):
    """Returns the recorded logits, batch by batch: the pipeline around the model, without the model."""

    def __init__(self, outputs: list[torch.Tensor]):
        super().__init__()
        self.outputs, self.position = outputs, 0

    def forward(self, x):
        out = self.outputs[self.position]
        if len(out) != len(x):
            raise RuntimeError("the replay's batches differ from the recorded ones")
        self.position += 1
        return out


def ours(model, pre, comp, names, workdir: Path, tta: str) -> float:
    start = time.perf_counter()
    predict_on_cpu(model, pre, comp.test, names, workdir / "pred", shard_size=500, tta=tta)
    encode_carvana(workdir / "pred", names, workdir / "ours.csv.gz")
    return time.perf_counter() - start


def seed_loop(model, pre, comp, names, workdir: Path, tta: bool) -> float:
    mean = torch.tensor(pre.mean).view(3, 1, 1)
    std = torch.tensor(pre.std).view(3, 1, 1)
    start = time.perf_counter()
    with gzip.open(workdir / "seed.csv.gz", "wt") as out, torch.no_grad():
        out.write("img,rle_mask\n")
        for name in names:
            img = Image.open(io.BytesIO(comp.test.read(name))).convert("RGB")
            small = img.resize((pre.size[1], pre.size[0]), Image.BILINEAR)
            x = (torch.from_numpy(np.asarray(small, dtype=np.float32) / 255.0).permute(2, 0, 1) - mean) / std
            probs = torch.sigmoid(model(x[None]))
            if tta:
                probs = (probs + torch.sigmoid(model(x[None].flip(-1))).flip(-1)) / 2
            full = F.interpolate(probs, (img.height, img.width), mode="bilinear")
            mask = (full[0, 0] > 0.5).numpy().astype(np.uint8)
            out.write(f"{name},{standard_snippet(mask)}\n")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=1024)
    parser.add_argument("--tta", action="store_true", help="the horizontal flip on both paths")
    parser.add_argument("--model", type=Path, default=paths.model(0))
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    comp = open_demo(demo_competition(args.images))
    names = comp.test.names()[: args.images]
    (model_ours, pre), (model_seed, _) = load_model(args.model), load_model(args.model)
    work = Path(tempfile.mkdtemp(prefix="carvana-bench-predict-"))

    rec_ours, rec_seed = Recorder(model_ours), Recorder(model_seed)
    tta = "hflip" if args.tta else "none"
    total_ours = ours(rec_ours, pre, comp, names, work, tta)
    total_seed = seed_loop(rec_seed, pre, comp, names, work, args.tta)
    rest_ours = ours(Replay(rec_ours.outputs), pre, comp, names, work / "replay", tta)
    rest_seed = seed_loop(Replay(rec_seed.outputs), pre, comp, names, work, args.tta)
    ours_rows, seed_rows = encode.read(work / "ours.csv.gz"), encode.read(work / "seed.csv.gz")
    agree = np.mean(
        [
            dice(Carvana.dialect.decode(ours_rows[n], (1280, 1918)), Carvana.dialect.decode(seed_rows[n], (1280, 1918)))
            for n in names
        ]
    )

    n = len(names)
    print(f"machine: {machine()}")
    print(
        f"{n} demo test images of 1918x1280, model input {pre.size[1]}x{pre.size[0]}, same model, "
        f"{'flip TTA' if args.tta else 'no TTA'}; "
        f"Dice between the two submissions {agree:.5f} (uint8 storage and float up-sampling differ in rounding)"
    )
    print(f"{'':28}{'total s':>9}{'ms/img':>9}{'non-model ms/img':>18}{'model ms/img':>14}")
    for label, total, rest in (
        ("per-image loop (seed)", total_seed, rest_seed),
        ("pipeline (batched)", total_ours, rest_ours),
    ):
        print(f"{label:28}{total:9.2f}{total / n * 1e3:9.1f}{rest / n * 1e3:18.1f}{(total - rest) / n * 1e3:14.1f}")
    print(
        f"end-to-end speed-up: {total_seed / total_ours:.2f}x (the goal: 3x); non-model time per image: "
        f"{rest_seed / rest_ours:.2f}x less; the model: {(total_seed - rest_seed) / (total_ours - rest_ours):.2f}x"
    )


if __name__ == "__main__":
    main()
