"""Typed, validated view of params.yaml.

Every default lives in params.yaml and nowhere else; the dataclasses here only say which keys exist,
their types and their ranges. Unknown keys, missing keys, wrong types and out-of-range values are
rejected with a message that names the key, so a typo in `dvc exp run -S train.lr=...` fails before
any work starts.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

from pipeline.errors import UserError


class ParamError(UserError, ValueError):
    """A params.yaml value that the pipeline cannot use; the message names the key and the fix."""


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ParamError(f"{key} must be a mapping of {tp.__name__} keys, got {value!r}")
        return _build(tp, value, key)
    if origin is Literal:
        if value in typing.get_args(tp):
            return value
        raise ParamError(f"{key} must be one of {_type_name(tp)}, got {value!r}")
    if origin in (Union, types.UnionType):
        for option in typing.get_args(tp):
            try:
                return _convert(value, option, key)
            except ParamError:
                continue
        raise ParamError(f"{key} must be {_type_name(tp)}, got {value!r}")
    if origin is list:
        if not isinstance(value, list):
            raise ParamError(f"{key} must be a list ({_type_name(tp)}), got {value!r}")
        (item,) = typing.get_args(tp)
        return [_convert(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ParamError(f"{key} must be a mapping, got {value!r}")
        k_tp, v_tp = typing.get_args(tp)
        return {_convert(k, k_tp, key): _convert(v, v_tp, f"{key}.{k}") for k, v in value.items()}
    if tp is type(None):
        if value is None:
            return None
        raise ParamError(f"{key} must be null, got {value!r}")
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ParamError(f"{key} must be true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ParamError(f"{key} must be an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise ParamError(f"{key} must be a finite number, got {value!r}")
            return float(value)
        raise ParamError(f"{key} must be a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ParamError(f"{key} must be a string, got {value!r}")
    raise TypeError(f"unsupported parameter type {tp!r} for {key}")


def _build(cls: type, data: dict, prefix: str):
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise ParamError(f"unknown key {where}{unknown[0]} in params.yaml; known keys here: {', '.join(names)}")
    missing = [n for n in names if n not in data]
    if missing:
        where = f"{prefix}." if prefix else ""
        raise ParamError(f"params.yaml lacks {where}{missing[0]}; add it (see README, 'Params')")
    values = {n: _convert(data[n], hints[n], f"{prefix}.{n}" if prefix else n) for n in names}
    obj = cls(**values)
    check = getattr(obj, "check", None)
    if check is not None:
        check(prefix)
    return obj


def require(condition: bool, key: str, message: str) -> None:
    """Raise ParamError('key message') unless condition holds."""
    if not condition:
        raise ParamError(f"{key} {message}")


# ----------------------------------------------------------------------------------------------
# download


@dataclasses.dataclass(frozen=True)
class DemoParams:
    seed: int
    train_cars: int
    test_cars: int
    width: int
    height: int
    multiclass: bool

    def check(self, key: str) -> None:
        require(self.train_cars >= 2, f"{key}.train_cars", f"must be at least 2, got {self.train_cars}")
        require(self.test_cars >= 1, f"{key}.test_cars", f"must be at least 1, got {self.test_cars}")
        require(64 <= self.width <= 8192, f"{key}.width", f"must be in 64..8192, got {self.width}")
        require(64 <= self.height <= 8192, f"{key}.height", f"must be in 64..8192, got {self.height}")


@dataclasses.dataclass(frozen=True)
class LocalParams:
    """How to read a folder the user already has (`download.source: local`)."""

    path: str
    layout: Literal["kaggle", "folder-pairs", "mindspore", "tiff-stack"]
    images: str
    masks: str
    test_images: str
    mask_suffix: str
    mask_values: Literal["binary", "index", "colors"]
    colors: dict[int, list[int]]


@dataclasses.dataclass(frozen=True)
class DownloadParams:
    source: Literal["demo", "kaggle", "local"]
    competition: str
    hq: bool
    demo: DemoParams
    local: LocalParams

    def check(self, key: str) -> None:
        require(bool(self.competition.strip()), f"{key}.competition", "must name a competition slug")
        if self.source == "local":
            require(
                bool(self.local.path),
                f"{key}.local.path",
                "must name the folder with the data when download.source is local",
            )


# ----------------------------------------------------------------------------------------------
# split


@dataclasses.dataclass(frozen=True)
class SplitParams:
    folds: int
    fold: Union[int, Literal["all"]]
    seed: int
    stratify: bool
    group: Literal["car", "image"]

    def check(self, key: str) -> None:
        require(self.folds >= 2, f"{key}.folds", f"must be at least 2, got {self.folds}")
        if self.fold != "all":
            require(
                0 <= self.fold < self.folds,
                f"{key}.fold",
                f"must be in 0..{self.folds - 1} (or 'all'), got {self.fold}",
            )

    def validation_folds(self) -> list[int]:
        """The folds to hold out, one trained model each."""
        return list(range(self.folds)) if self.fold == "all" else [self.fold]


# ----------------------------------------------------------------------------------------------
# train


SEED_ARCHS = ("unet", "unetplusplus")  # built here without an encoder (the seed's U-Net and a UNet++)
Arch = Literal[
    "unet", "unetplusplus", "fpn", "linknet", "deeplabv3", "deeplabv3plus", "manet", "pspnet", "pan", "upernet",
    "segformer", "dpt",
]  # fmt: skip


@dataclasses.dataclass(frozen=True)
class ModelParams:
    arch: Arch
    encoder: str  # none: the seed's networks; else an smp encoder (resnet34, efficientnet-b3, tu-convnext_tiny, ...)
    encoder_weights: str  # imagenet (or another published set), none, or a local .pth / .safetensors file
    base_channels: int
    depth: int
    bilinear: bool
    deep_supervision: bool

    @property
    def has_encoder(self) -> bool:
        return self.encoder != "none"

    def check(self, key: str) -> None:
        require(self.base_channels >= 1, f"{key}.base_channels", f"must be at least 1, got {self.base_channels}")
        require(1 <= self.depth <= 6, f"{key}.depth", f"must be in 1..6, got {self.depth}")
        require(
            self.has_encoder or self.arch in SEED_ARCHS,
            f"{key}.arch",
            f"{self.arch} needs an encoder: set {key}.encoder (e.g. resnet34, efficientnet-b3, tu-convnext_tiny), "
            f"or use {' or '.join(SEED_ARCHS)} without one",
        )
        require(
            self.has_encoder or self.encoder_weights == "none",
            f"{key}.encoder_weights",
            f"needs {key}.encoder (e.g. resnet34); without an encoder it must be none, got {self.encoder_weights!r}",
        )
        require(
            not (self.has_encoder and self.deep_supervision),
            f"{key}.deep_supervision",
            "is for the seed's unetplusplus only (encoder none); smp's decoders have one head",
        )

    def kwargs(self) -> dict:
        """Constructor arguments for pipeline.models.factory.create_model (without channels and classes)."""
        if self.has_encoder:
            return {"encoder": self.encoder}
        if self.arch == "unet":
            return {"base_channels": self.base_channels, "depth": self.depth, "bilinear": self.bilinear}
        return {"base_channels": self.base_channels, "depth": self.depth, "deep_supervision": self.deep_supervision}


@dataclasses.dataclass(frozen=True)
class AugmentParams:
    hflip: float
    shift: float
    scale: float
    rotate: float
    brightness: float
    contrast: float
    saturation: float
    hue: float

    def check(self, key: str) -> None:
        limits = {
            "hflip": 1.0,
            "shift": 0.5,
            "scale": 0.5,
            "rotate": 45.0,
            "brightness": 1.0,
            "contrast": 1.0,
            "saturation": 1.0,
            "hue": 0.5,
        }
        for name, top in limits.items():
            value = getattr(self, name)
            require(0.0 <= value <= top, f"{key}.{name}", f"must be in 0..{top}, got {value}")


@dataclasses.dataclass(frozen=True)
class TrainParams:
    seed: int
    model: ModelParams
    scale: float
    crop: int | list[int]  # 0: whole images; N or [height, width]: random crops of the scaled images
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    warmup_epochs: float
    grad_clip: float
    bce_weight: float
    dice_weight: float
    augment: AugmentParams
    amp: bool
    channels_last: bool
    compile: bool
    workers: int
    init_from: str
    nproc: int

    def check(self, key: str) -> None:
        require(0.0 < self.scale <= 1.0, f"{key}.scale", f"must be in (0, 1], got {self.scale}")
        crop = self.crop if isinstance(self.crop, list) else [self.crop]
        require(
            crop == [0] or (len(crop) in (1, 2) and min(crop) >= 1),
            f"{key}.crop",
            f"must be 0 (whole images), a size N or [height, width] of at least 1, got {self.crop}",
        )
        require(1 <= self.epochs <= 10_000, f"{key}.epochs", f"must be in 1..10000, got {self.epochs}")
        require(1 <= self.batch_size <= 4096, f"{key}.batch_size", f"must be in 1..4096, got {self.batch_size}")
        require(0.0 < self.lr < 1.0, f"{key}.lr", f"must be in (0, 1), got {self.lr}")
        require(self.weight_decay >= 0.0, f"{key}.weight_decay", f"must be >= 0, got {self.weight_decay}")
        require(
            0.0 <= self.warmup_epochs <= self.epochs,
            f"{key}.warmup_epochs",
            f"must be in [0, train.epochs], got {self.warmup_epochs}",
        )
        require(self.weight_decay <= 1.0, f"{key}.weight_decay", f"must be in [0, 1], got {self.weight_decay}")
        require(
            0.0 <= self.grad_clip <= 1e6,
            f"{key}.grad_clip",
            f"must be in [0, 1e6] (0 turns it off), got {self.grad_clip}",
        )
        require(
            self.bce_weight >= 0 and self.dice_weight >= 0 and self.bce_weight + self.dice_weight > 0,
            f"{key}.bce_weight/dice_weight",
            "must be >= 0 and not both 0",
        )
        require(0 <= self.workers <= 256, f"{key}.workers", f"must be in 0..256, got {self.workers}")
        require(1 <= self.nproc <= 1024, f"{key}.nproc", f"must be in 1..1024, got {self.nproc}")

    @property
    def crop_size(self) -> tuple[int, int] | None:
        """(height, width) of the training crops, or None for whole images."""
        if self.crop == 0:
            return None
        h, w = (self.crop * 2)[:2] if isinstance(self.crop, list) else (self.crop, self.crop)
        return int(h), int(w)


# ----------------------------------------------------------------------------------------------
# evaluate and predict


@dataclasses.dataclass(frozen=True)
class EvaluateParams:
    threshold_min: float
    threshold_max: float
    worst: int

    def check(self, key: str) -> None:
        require(
            0.0 < self.threshold_min <= self.threshold_max < 1.0,
            f"{key}.threshold_min/threshold_max",
            f"must satisfy 0 < min <= max < 1, got {self.threshold_min}, {self.threshold_max}",
        )
        require(self.worst >= 0, f"{key}.worst", f"must be >= 0, got {self.worst}")


@dataclasses.dataclass(frozen=True)
class PredictParams:
    batch_size: int
    workers: int
    tta: bool
    shard_size: int
    amp: bool
    nproc: int
    backend: Literal["torch", "onnxruntime"]

    def check(self, key: str) -> None:
        require(1 <= self.batch_size <= 4096, f"{key}.batch_size", f"must be in 1..4096, got {self.batch_size}")
        require(0 <= self.workers <= 256, f"{key}.workers", f"must be in 0..256, got {self.workers}")
        require(1 <= self.shard_size <= 100_000, f"{key}.shard_size", f"must be in 1..100000, got {self.shard_size}")
        require(1 <= self.nproc <= 1024, f"{key}.nproc", f"must be in 1..1024, got {self.nproc}")


@dataclasses.dataclass(frozen=True)
class EncodeParams:
    threshold: Union[float, Literal["best"]]
    jobs: int

    def check(self, key: str) -> None:
        if self.threshold != "best":
            require(
                0.0 < self.threshold < 1.0, f"{key}.threshold", f"must be in (0, 1) or 'best', got {self.threshold}"
            )
        require(self.jobs != 0, f"{key}.jobs", "must be a number of processes (-1: one per core), not 0")


@dataclasses.dataclass(frozen=True)
class SubmitParams:
    sha256: str  # "": upload nothing; else the first characters of the SHA-256 of the one file to upload
    message: str
    force: bool

    def check(self, key: str) -> None:
        require(
            self.sha256 == "" or (len(self.sha256) >= 8 and all(c in "0123456789abcdef" for c in self.sha256)),
            f"{key}.sha256",
            f"must be empty (upload nothing) or at least 8 hex digits of the file's SHA-256 as the encode stage prints "
            f"it, got {self.sha256!r}",
        )


# ----------------------------------------------------------------------------------------------


SECTIONS: dict[str, type] = {
    "download": DownloadParams,
    "split": SplitParams,
    "train": TrainParams,
    "evaluate": EvaluateParams,
    "predict": PredictParams,
    "encode": EncodeParams,
    "submit": SubmitParams,
}


def load(*sections: str, path: str | Path = "params.yaml") -> dict[str, Any]:
    """Load params.yaml, validate every section, and return the named ones (all when none is named).

    Every section is checked whichever stage runs first, so a typo in predict.* stops `dvc repro` before
    hours of training rather than after.
    """
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    path = Path(path)
    if not path.is_file():
        raise ParamError(f"{path} not found; run from the project root, where params.yaml lives")
    try:
        with path.open() as f:
            data = YAML(typ="safe", pure=True).load(f) or {}  # YAML 1.2, as DVC reads it: 3e-4 is a number
    except YAMLError as err:
        where = getattr(err, "problem_mark", None)
        line = f" at line {where.line + 1}" if where is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ParamError(f"{path} is not valid YAML{line} ({problem}); fix that line") from None
    if not isinstance(data, dict):
        raise ParamError(f"{path} must be a mapping of sections ({', '.join(SECTIONS)}), got {type(data).__name__}")
    unknown = sorted(set(data) - set(SECTIONS))
    if unknown:
        raise ParamError(f"unknown section {unknown[0]} in {path}; known: {', '.join(SECTIONS)}")
    checked = {name: _convert(data.get(name), SECTIONS[name], name) for name in SECTIONS}
    return {name: checked[name] for name in sections or SECTIONS}


def as_dict(obj: Any) -> Any:
    """Plain-dict form of a params dataclass (for fingerprints and checkpoints)."""
    return dataclasses.asdict(obj)
