"""ONNX export with dynamic batch, height and width (torch's export-based exporter).

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

import torch

from pipeline.errors import UserError
from pipeline.prediction.onnx_runtime import METADATA_KEY, OnnxModel
from pipeline.prediction.predictor import load_predictor
from pipeline.provenance import file_hash


class ExportError(UserError):
    """An export that would not be what was asked; nothing was written."""


def export(ckpt_path: Path, out: Path, opset: int = 18) -> Path:
    """Write `out` (.onnx) from a checkpoint: input 'image' (N, C, H, W) of any size, output 'logits'.

    Uses torch's export-based exporter with symbolic batch, height and width; the checkpoint's hash is
    stored beside its description, so callers can tell whether an existing export is still current. The file
    appears under its name only once complete, never over the checkpoint itself, and only at the opset asked
    for (the exporter writes 18 and cannot always convert down: it would keep 18 without a word).
    """
    import onnx

    if out.resolve() == Path(ckpt_path).resolve() or out.is_dir():
        raise ExportError(f"{out} is {'a folder' if out.is_dir() else 'the checkpoint itself'}: choose another -o")
    predictor = load_predictor([ckpt_path])
    (model,) = predictor.models
    h, w = predictor.pre.size
    x = torch.zeros(1, predictor.pre.channels, h, w)
    dims = {0: torch.export.Dim("batch"), 2: torch.export.Dim("height"), 3: torch.export.Dim("width")}
    part = out.with_name(out.name + ".part")
    for name in ("torch.onnx", "onnxscript"):  # their fallbacks log tracebacks; the opset is checked below
        logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model,
                (x,),
                str(part),
                input_names=["image"],
                output_names=["logits"],
                opset_version=opset,
                dynamo=True,
                dynamic_shapes={"x": dims},
                external_data=False,
            )
        graph = onnx.load(str(part))
        written = next(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx"))
        if written != opset:
            raise ExportError(
                f"torch's exporter could not write this model at opset {opset} (it wrote {written}): use --opset "
                f"{written} or newer, which ONNX Runtime 1.14 and later run"
            )
        meta = {**predictor.description, "source_sha256": predictor.hashes[0]}
        graph.metadata_props.add(key=METADATA_KEY, value=json.dumps(meta))
        onnx.save(graph, str(part))
        part.replace(out)
    except OSError as err:
        where = f" ({err.filename})" if err.filename and str(err.filename) != str(part) else ""
        raise ExportError(
            f"cannot write {out}: {err.strerror or err}{where}; choose another -o or free some space"
        ) from None
    finally:
        if part.exists():
            part.unlink()
    return out


def is_current(onnx_path: Path, ckpt_path: Path) -> bool:
    """True when `onnx_path` exists and was exported from exactly this checkpoint."""
    return onnx_path.is_file() and OnnxModel(onnx_path).meta.get("source_sha256") == file_hash(ckpt_path)
