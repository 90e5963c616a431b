"""ONNX Runtime against torch on this CPU: the same model and image size, in one run.

    python -m bench.onnx [--base 64] [--height 1280] [--width 1918] [--repeat 3]

By default the seed's U-Net (64 base channels, bilinear, 17.3M parameters) on one full 1918x1280
image, the case the CIMC seed timed (8.8 s torch, 9.8 s ONNX Runtime on its CPU). Weights are random:
the time does not depend on them. Outputs are checked to agree before timing.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from bench.common import best_of, machine
from pipeline.data.preprocess import Preprocess
from pipeline.models import checkpoint
from pipeline.models.factory import count_parameters, create_model
from pipeline.prediction.onnx_export import OnnxModel, export


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", type=int, default=64)
    parser.add_argument("--height", type=int, default=1280)
    parser.add_argument("--width", type=int, default=1918)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    config = checkpoint.model_config("unet", 3, 1, {"base_channels": args.base, "depth": 4, "bilinear": True})
    model = create_model(**config).eval()
    work = Path(tempfile.mkdtemp(prefix="carvana-bench-onnx-"))
    pre = Preprocess.for_data((args.height, args.width), 1.0, 3)
    checkpoint.save(
        work / "model.pt",
        {
            "model": config,
            "preprocess": pre.to_dict(),
            "class_names": ["background", "car"],
            "state_dict": model.state_dict(),
        },
    )
    session = OnnxModel(export(work / "model.pt", work / "model.onnx"))
    x = torch.randn(1, 3, args.height, args.width)
    with torch.inference_mode():
        gap = (torch.sigmoid(model(x)) - torch.sigmoid(session(x))).abs().max().item()
        t_torch = best_of(lambda: model(x), args.repeat)
    t_onnx = best_of(lambda: session(x), args.repeat)
    print(f"machine: {machine()}")
    print(
        f"U-Net base {args.base} ({count_parameters(model) / 1e6:.1f}M parameters), one {args.width}x{args.height} "
        f"image; max |probability difference| {gap:.1e}; best of {args.repeat}"
    )
    print(f"torch        : {t_torch:7.2f} s")
    print(f"onnxruntime  : {t_onnx:7.2f} s")
    print(f"ratio        : {t_torch / t_onnx:7.2f}x (torch time / ONNX Runtime time)")


if __name__ == "__main__":
    main()
