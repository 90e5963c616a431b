"""Copying weights between networks of not quite the same shape: every tensor whose name and shape match.

Used by train.init_from (a checkpoint of another class count) and by local encoder weights (torchvision's or a
whole smp model's state dict), which is why it sits apart from both checkpoint and encoders.
"""

from __future__ import annotations

import torch
from torch import nn

from pipeline.errors import UserError


def copy_matching(model: nn.Module, state: dict, source) -> list[str]:
    """Load the tensors of `state` whose names and shapes match the model's; return what was skipped and why."""
    own = model.state_dict()
    copied, skipped = {}, []
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            continue  # e.g. the seed's 'mask_values' list
        if key not in own:
            skipped.append(f"{key} (not in this model)")
        elif own[key].shape != value.shape:
            skipped.append(f"{key} (shape {tuple(value.shape)} here {tuple(own[key].shape)})")
        else:
            copied[key] = value
    if not copied:
        raise UserError(f"{source} shares no layer with this model; is it a checkpoint of this architecture?")
    model.load_state_dict(copied, strict=False)
    return skipped
