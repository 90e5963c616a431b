"""ONNX Runtime models that stand in for torch: a session called like the model, (N, C, H, W) in, logits out.

The exported graph's metadata carries the checkpoint's description (architecture, preprocessing, classes), so an
.onnx file is as self-contained as a .pt; the exporter (onnx_export) is apart, so that what only loads a model
never depends on it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from pipeline.errors import UserError

METADATA_KEY = "carvana_pipeline"


class OnnxError(UserError):
    """An ONNX file this pipeline cannot use."""


class OnnxModel:
    """An ONNX Runtime session called like the torch model: (N, C, H, W) tensor in, logits tensor out."""

    def __init__(self, path: Path, threads: int = 0):
        import onnxruntime as ort

        if not Path(path).is_file():
            raise OnnxError(f"{path} does not exist; write it with `kseg export`")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(path), options, providers=ort.get_available_providers())
        except Exception as err:  # onnxruntime raises its own Fail/InvalidGraph types
            raise OnnxError(f"{path} is not a loadable ONNX model ({str(err).splitlines()[0]})") from None
        meta = self.session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
        if meta is None:
            raise OnnxError(
                f"{path} was not exported by this pipeline (no {METADATA_KEY} metadata); "
                f"export a checkpoint with `kseg export`"
            )
        self.meta = json.loads(meta)
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or inputs[0].shape[1] != self.meta["model"]["in_channels"]:
            raise OnnxError(f"{path}: its graph does not take (N, {self.meta['model']['in_channels']}, H, W) images")
        self.path = Path(path)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.session.run(["logits"], {"image": np.ascontiguousarray(x.detach().cpu().numpy(), np.float32)})[0]
        return torch.from_numpy(logits)

    def eval(self) -> "OnnxModel":
        return self
