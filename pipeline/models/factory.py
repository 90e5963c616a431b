"""Model factory: one place that maps an architecture name and its arguments to a network.

Without an encoder: the seed's U-Net and a UNet++, built here. With `encoder=<name>`: any architecture of
segmentation_models_pytorch around that encoder (pipeline.models.encoders). Checkpoints store
`{"arch": ..., **kwargs}` so that a model rebuilds itself; nothing downstream asks for architecture flags again.
"""

from __future__ import annotations

from torch import nn

from pipeline.errors import UserError
from pipeline.models.unet import UNet
from pipeline.models.unetplusplus import UNetPlusPlus

ARCHS: dict[str, type[nn.Module]] = {"unet": UNet, "unetplusplus": UNetPlusPlus}


def create_model(arch: str, encoder: str | None = None, **kwargs) -> nn.Module:
    """Build a network by name; the error lists the valid names and arguments."""
    if encoder not in (None, "none"):
        from pipeline.models.encoders import EncoderModel

        return EncoderModel(arch, encoder, **kwargs)
    cls = ARCHS.get(arch)
    if cls is None:
        raise UserError(f"{arch!r} needs an encoder (encoder=resnet34, ...); without one choose {', '.join(ARCHS)}")
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise UserError(f"{arch}: {err}") from None


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
