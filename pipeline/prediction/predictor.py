"""Checkpoints -> a predictor, in one place: the models (.pt through torch, .onnx through ONNX Runtime), the
preprocessing and classes they agree on, and how to call them (flip TTA).

Evaluate, predict, the ONNX export, `kseg predict`, torch.hub and the benches all load models here.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch

from pipeline.data.preprocess import Preprocess
from pipeline.errors import UserError
from pipeline.models import checkpoint
from pipeline.prediction.inference import probabilities
from pipeline.provenance import file_hash


class PredictorError(UserError):
    """Models that cannot predict together."""


@dataclass
class Predictor:
    """The models to average and what they agree on."""

    models: list  # torch modules or OnnxModel: anything that maps a normalised batch to logits
    pre: Preprocess
    classes: int
    class_names: list[str]
    hashes: list[str]  # SHA-256 of each checkpoint (an .onnx is known by the checkpoint it came from)
    description: dict  # architecture, preprocessing and class names: what makes a file rebuild its model alone
    labels: str = "binary"  # binary | multiclass (softmax) | multilabel (a sigmoid per class)

    def __call__(self, x: torch.Tensor, tta: str = "none", autocast=nullcontext) -> torch.Tensor:
        """(N, C, H, W) probabilities of a normalised batch, averaged over the models and the TTA set's views."""
        return probabilities(self.models, x, tta, autocast, self.labels)


def labels_of(ckpt: dict) -> str:
    """A checkpoint's kind of labels; those written before multi-label models: binary or multi-class by width."""
    return ckpt.get("labels") or ("binary" if ckpt["model"]["classes"] == 1 else "multiclass")


def _load_one(path: Path, device: torch.device, memory_format) -> tuple[object, dict, str]:
    if Path(path).suffix == ".onnx":
        from pipeline.prediction.onnx_runtime import OnnxModel

        model = OnnxModel(path)
        _check_preprocess(path, model.meta)
        return model, model.meta, f"onnx:{model.meta['source_sha256']}"
    ckpt = checkpoint.load(path)
    _check_preprocess(path, ckpt)
    return checkpoint.build_model(ckpt).to(device, memory_format=memory_format), ckpt, file_hash(path)


def _check_preprocess(path: Path, meta: dict) -> None:
    """A model file whose input contract was damaged or edited stops here, named, before any image is read."""
    try:
        Preprocess.from_dict(meta["preprocess"])
    except ValueError as err:
        raise PredictorError(f"{path}: {err}; the file is damaged or was edited: train it again") from None


def load_predictor(
    paths: list[Path], device: torch.device | None = None, memory_format=torch.contiguous_format
) -> Predictor:
    """Load models (.pt or .onnx) that share preprocessing and classes (e.g. the fold models), on `device` (the
    CPU when None)."""
    device = device or torch.device("cpu")
    if not paths:
        raise PredictorError("no model to predict with; train one first (`dvc repro train`)")
    models, hashes, first = [], [], None
    for path in paths:
        model, ckpt, digest = _load_one(path, device, memory_format)
        if first is None:
            first = (path, ckpt)
        elif ckpt["model"]["classes"] != first[1]["model"]["classes"] or ckpt["preprocess"] != first[1]["preprocess"]:
            raise PredictorError(
                f"{path} predicts {ckpt['model']['classes']} class(es) at {ckpt['preprocess']['size']} "
                f"but {first[0]} predicts {first[1]['model']['classes']} at "
                f"{first[1]['preprocess']['size']}; models to average must match: retrain them together"
            )
        models.append(model)
        hashes.append(digest)
    ckpt = first[1]
    description = {k: ckpt[k] for k in ("model", "preprocess", "class_names")}
    description["labels"] = labels_of(ckpt)
    pre = Preprocess.from_dict(ckpt["preprocess"])
    classes = ckpt["model"]["classes"]
    return Predictor(models, pre, classes, ckpt["class_names"], hashes, description, description["labels"])
