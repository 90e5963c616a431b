"""ONNX export with dynamic batch, height and width, and an ONNX Runtime model that stands in for torch.

The exported graph returns logits like the torch model; the checkpoint's description (architecture,
preprocessing, classes) travels in the ONNX metadata, so an .onnx file is as self-contained as a .pt.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import warnings
from pathlib import Path

import numpy as np
import torch

from pipeline.errors import UserError
from pipeline.prediction.predictor import load_predictor
from pipeline.provenance import file_hash

METADATA_KEY = "carvana_pipeline"


class OnnxError(UserError):
    """An ONNX file this pipeline cannot use."""


def export(ckpt_path: Path, out: Path, opset: int = 18) -> Path:
    """Write `out` (.onnx) from a checkpoint: input 'image' (N, C, H, W) of any size, output 'logits'.

    Uses torch's export-based exporter with symbolic batch, height and width; the checkpoint's hash is
    stored beside its description, so callers can tell whether an existing export is still current.
    """
    import onnx

    predictor = load_predictor([ckpt_path])
    (model,) = predictor.models
    h, w = predictor.pre.size
    x = torch.zeros(1, predictor.pre.channels, h, w)
    dims = {0: torch.export.Dim("batch"), 2: torch.export.Dim("height"), 3: torch.export.Dim("width")}
    out.parent.mkdir(parents=True, exist_ok=True)
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (x,),
            str(out),
            input_names=["image"],
            output_names=["logits"],
            opset_version=opset,
            dynamo=True,
            dynamic_shapes={"x": dims},
            external_data=False,
        )
    graph = onnx.load(str(out))
    meta = {**predictor.description, "source_sha256": predictor.hashes[0]}
    graph.metadata_props.add(key=METADATA_KEY, value=json.dumps(meta))
    onnx.save(graph, str(out))
    return out


def is_current(onnx_path: Path, ckpt_path: Path) -> bool:
    """True when `onnx_path` exists and was exported from exactly this checkpoint."""
    return onnx_path.is_file() and OnnxModel(onnx_path).meta.get("source_sha256") == file_hash(ckpt_path)


class OnnxModel:
    """An ONNX Runtime session called like the torch model: (N, C, H, W) tensor in, logits tensor out."""

    def __init__(self, path: Path, threads: int = 0):
        import onnxruntime as ort

        if not Path(path).is_file():
            raise OnnxError(f"{path} does not exist; write it with `carvana export`")
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
                f"export a checkpoint with `carvana export`"
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
