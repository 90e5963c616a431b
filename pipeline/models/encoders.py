"""Encoder-decoder networks from segmentation_models_pytorch (smp): ResNet, EfficientNet, any timm encoder.

Every leading Carvana solution started from an ImageNet-pretrained encoder; smp provides them behind one
factory. Here they get this pipeline's contract: logits for inputs of any size (replicate-padded to the
encoder's stride, 1918 -> 1920, and cropped back), a config that rebuilds the network without a download,
and weights that come from smp's own download (cached where smp caches) or from a local file. smp is
imported only when an encoder is asked for (it costs seconds to import).
"""

from __future__ import annotations

import contextlib
import difflib
import os
import socket
from pathlib import Path
from unittest import mock
from urllib.parse import urlsplit

import torch
from torch import nn

from pipeline.errors import UserError
from pipeline.images import IMAGENET
from pipeline.models.unet import pad_to_multiple
from pipeline.models.weights import copy_matching
from pipeline.paths import is_weights_file


class EncoderError(UserError):
    """An encoder, architecture or weights file that smp cannot provide; the message names the key."""


def _smp():
    try:
        import segmentation_models_pytorch as smp
    except ImportError as err:
        raise EncoderError(
            f"train.model.encoder needs segmentation_models_pytorch ({err}); install the project with "
            f"`pip install -e .` as the README says"
        ) from None
    return smp


def check_encoder(name: str, key: str = "train.model.encoder") -> None:
    """Refuse an encoder smp does not know, suggesting the closest names."""
    smp = _smp()
    if name.startswith("tu-"):
        import timm

        if not timm.is_model(name[3:]):
            close = difflib.get_close_matches(name[3:], timm.list_models(), n=3)
            raise EncoderError(
                f"{key}: timm has no model {name[3:]!r}"
                + (f"; did you mean {', '.join('tu-' + c for c in close)}?" if close else "")
            )
        return
    names = smp.encoders.get_encoder_names()
    if name not in names:
        close = difflib.get_close_matches(name, names, n=3) or ["resnet34", "efficientnet-b3", "mit_b2"]
        raise EncoderError(
            f"{key}: unknown encoder {name!r}; e.g. {', '.join(close)} ({len(names)} smp encoders, or tu-<any timm "
            f"model>)"
        )


class EncoderModel(nn.Module):
    """An smp network returning logits (N, classes, H, W) for inputs (N, in_channels, H, W) of any size."""

    def __init__(self, arch: str, encoder: str, in_channels: int = 3, classes: int = 1):
        super().__init__()
        smp = _smp()
        check_encoder(encoder)
        try:
            self.net = smp.create_model(
                arch, encoder_name=encoder, encoder_weights=None, in_channels=in_channels, classes=classes
            )
        except (KeyError, ValueError, RuntimeError, AttributeError) as err:
            raise EncoderError(f"train.model: smp cannot build {arch} with {encoder} ({err})") from None
        self.net.requires_divisible_input_shape = False  # padded here, which keeps an ONNX export's sizes dynamic
        self.multiple = int(getattr(self.net.encoder, "output_stride", 32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, (h, w) = pad_to_multiple(x, self.multiple)
        return self.net(x)[..., :h, :w]


def preprocessing(encoder: str, weights: str) -> dict:
    """Mean and std the encoder's published weights expect (read from smp's cache after the download); the
    ImageNet statistics for random or local weights."""
    if weights in ("none", "") or is_weights_file(weights):
        return dict(IMAGENET)
    try:
        params = _smp().encoders.get_preprocessing_params(encoder, pretrained=weights)
    except Exception:  # no config published for it: the ImageNet numbers smp's encoders share
        return dict(IMAGENET)
    if list(params.get("input_range", [0, 1])) != [0, 1]:
        raise EncoderError(f"train.model.encoder {encoder} expects inputs in {params['input_range']}; not supported")
    return {"mean": tuple(params["mean"]), "std": tuple(params["std"])}


def load_weights(model: EncoderModel, encoder: str, weights: str, in_channels: int) -> list[str]:
    """Put `weights` into the model's encoder: smp's published set (downloaded by smp) or a local file holding
    the encoder's or the whole model's state dict. Returns the layers that were skipped and why."""
    key = "train.model.encoder_weights"
    if weights == "none":
        return []
    if is_weights_file(weights):
        state = _read_state(Path(weights), key)
        if any(k.startswith("net.") for k in state):  # a checkpoint of this pipeline's
            prefix = ""
        elif any(k.startswith("encoder.") for k in state):  # a whole smp model
            prefix = "net."
        else:  # the encoder alone (e.g. torchvision's resnet34 state dict)
            prefix = "net.encoder."
        return copy_matching(model, {prefix + k: v for k, v in state.items()}, weights)
    smp = _smp()
    if not encoder.startswith("tu-"):
        published = smp.encoders.encoders[encoder]["pretrained_settings"]
        if weights not in published:
            raise EncoderError(
                f"{key}: {encoder} publishes {', '.join(published) or 'no weights'}, not {weights!r}; or use none or a "
                f"local .pth/.safetensors file"
            )
    try:
        with _offline_unless_reachable():
            source = smp.encoders.get_encoder(
                encoder,
                in_channels=in_channels,
                depth=len(model.net.encoder.out_channels) - 1,
                weights=True if encoder.startswith("tu-") else weights,
                output_stride=model.multiple,
            )
    except Exception as err:  # offline: huggingface_hub / timm / urllib raise their own kinds of errors
        raise EncoderError(
            f"{key}={weights}: cannot download the {encoder} weights ({type(err).__name__}: "
            f"{str(err).splitlines()[0][:160] if str(err) else 'no network?'}); without network, download them "
            f"elsewhere and set {key} to the local .pth or .safetensors file"
        ) from None
    return copy_matching(model.net.encoder, source.state_dict(), f"{encoder} {weights}")


def _hub_reachable(timeout: float = 3.0) -> bool:
    """One TCP connection to the Hugging Face hub, or to the HTTPS proxy on the way to it."""
    from huggingface_hub import constants

    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    url = urlsplit(proxy or constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout).close()
        return True
    except OSError:
        return False


@contextlib.contextmanager
def _offline_unless_reachable():
    """Without a route to the hub, huggingface_hub retries for about 25 s before failing; in its offline mode it
    answers at once, from its cache when the weights are there."""
    from huggingface_hub import constants

    if _hub_reachable():
        yield
        return
    with mock.patch.object(constants, "HF_HUB_OFFLINE", True):
        yield


def _read_state(path: Path, key: str) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise EncoderError(f"{key}: {path} does not exist; give a .pth or .safetensors file, imagenet or none")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise EncoderError(f"{key}: {path} is not a readable weights file ({str(err).splitlines()[0][:160]})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not any(isinstance(v, torch.Tensor) for v in state.values()):
        raise EncoderError(f"{key}: {path} holds no state dict of tensors")
    return {k.removeprefix("module."): v for k, v in state.items() if isinstance(v, torch.Tensor)}
