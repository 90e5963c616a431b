"""Checkpoints: plain dicts of tensors and numbers that rebuild their model alone.

Every checkpoint carries the architecture and its arguments, the preprocessing and the class names,
so predict never asks for architecture flags. Files are written atomically (temp file + rename): a
run killed while saving leaves the previous checkpoint intact. Loading uses `weights_only=True`, which
refuses pickled code.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from pipeline.errors import UserError
from pipeline.models.factory import create_model
from pipeline.models.weights import copy_matching

FORMAT = "carvana-pipeline/1"
REQUIRED = ("model", "state_dict", "preprocess", "class_names")  # what rebuilds the model and its inputs


class CheckpointError(UserError):
    """A file that is not a usable checkpoint of this pipeline."""


def save(path: Path, payload: dict) -> None:
    """Write a checkpoint atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"format": FORMAT, **payload}, tmp)
    os.replace(tmp, path)


def load_any(path: Path) -> dict:
    """Load a checkpoint file with weights_only=True: ours, or a plain state_dict (e.g. the seed's)."""
    if Path(path).is_dir():
        raise CheckpointError(f"{path} is a folder; give the checkpoint file (e.g. {Path(path) / 'best.pt'})")
    if not Path(path).is_file():
        raise CheckpointError(f"{path} does not exist; train a model first (`dvc repro train`) or fix the path")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # on a file that is not one, torch.load raises anything from KeyError to IndexError
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CheckpointError(f"{path} is not a PyTorch checkpoint or it is damaged ({first})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} holds a {type(data).__name__}, not a checkpoint dict")
    return data


def load(path: Path) -> dict:
    """Load one of this pipeline's checkpoints, with a clear error for anything else."""
    data = load_any(path)
    if data.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} was not written by this pipeline (no format {FORMAT!r}); "
            f"to start training from its weights, use train.init_from"
        )
    missing = [k for k in REQUIRED if k not in data]
    if missing:
        raise CheckpointError(f"{path} lacks {', '.join(missing)}: it is damaged or was edited; train it again")
    return data


def model_config(arch: str, in_channels: int, classes: int, kwargs: dict) -> dict:
    return {"arch": arch, "in_channels": in_channels, "classes": classes, **kwargs}


def build_model(ckpt: dict) -> nn.Module:
    """The model a checkpoint describes, with its weights, in eval mode."""
    config = dict(ckpt["model"])
    model = create_model(config.pop("arch"), **config)
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as err:
        raise CheckpointError(
            f"the checkpoint's weights do not fit the {ckpt['model']['arch']} it describes "
            f"({str(err).splitlines()[1].strip()}); the file is damaged or was edited"
        ) from None
    return model.eval()


def init_from(model: nn.Module, path: Path) -> list[str]:
    """Copy the weights of `path` whose names and shapes match; return what was skipped and why."""
    data = load_any(path)
    state = data.get("state_dict", data) if data.get("format") == FORMAT else data
    return copy_matching(model, state, path)
