"""Typed, validated view of params.yaml (pydantic models, one per section).

Every default lives in params.yaml and nowhere else; the models here only say which keys exist, their
types and their ranges. Unknown keys, missing keys, wrong types and out-of-range values are rejected with
one line that names the key, so a typo in `dvc exp run -S train.lr=...` fails before any work starts.
Types are strict (YAML's `true` is not an integer, "3" is not a number) and floats must be finite.
"""

from __future__ import annotations

import re
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, Union

import annotated_types as at
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pipeline.errors import UserError


class ParamError(UserError, ValueError):
    """A params.yaml value that the pipeline cannot use; the message names the key and the fix."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


def _require(condition: bool, key: str, message: str) -> None:
    """Inside a model validator: fail with 'key message'; `{key}` stands for the model's own key."""
    if not condition:
        raise ValueError(f"{{key}}.{key} {message}")


Probability = Annotated[float, Field(ge=0.0, le=1.0)]
Auto = Literal["auto"]  # a value the plan chooses from the data (pipeline.planning), unless the user sets one
Channel = Annotated[int, Field(ge=0, le=255)]  # one 8-bit colour value

# ----------------------------------------------------------------------------------------------
# download


class DemoParams(_Section):
    """The built-in miniature of download.competition: `train` and `test` groups of 16 images (Carvana: a car's
    views), at the competition's own size unless width and height say otherwise."""

    seed: int
    train: int = Field(ge=2, le=10_000)
    test: int = Field(ge=1, le=10_000)
    width: int = Field(ge=0, le=8192)  # 0: the competition's own
    height: int = Field(ge=0, le=8192)
    multiclass: bool

    @model_validator(mode="after")
    def _a_size(self):
        for key, value in (("width", self.width), ("height", self.height)):
            _require(value == 0 or value >= 64, key, f"must be 0 (the competition's own size) or >= 64, got {value}")
        _require((self.width == 0) == (self.height == 0), "width/height", "must both be 0 or both be set")
        return self


class LocalParams(_Section):
    """How to read a folder the user already has (`download.source: local`)."""

    path: str
    layout: Literal["kaggle", "folder-pairs", "mindspore", "tiff-stack"]
    images: str
    masks: str
    test_images: str
    mask_suffix: str
    mask_values: Literal["binary", "index", "colors"]
    colors: dict[Annotated[int, Field(ge=0, le=255)], Annotated[list[Channel], Field(min_length=3, max_length=3)]]


class DownloadParams(_Section):
    source: Literal["demo", "kaggle", "local"]
    competition: str = Field(min_length=1)
    hq: bool
    demo: DemoParams
    local: LocalParams

    @model_validator(mode="after")
    def _local_needs_a_path(self):
        _require(
            self.source != "local" or bool(self.local.path),
            "local.path",
            "must name the folder with the data when download.source is local",
        )
        return self


# ----------------------------------------------------------------------------------------------
# split


class SplitParams(_Section):
    folds: int = Field(ge=2)
    fold: Union[int, Literal["all"]]
    seed: int
    stratify: bool
    group: Literal["auto", "prefix", "image"]  # auto: the plan's (names <prefix>_<NN>: prefix; else image)

    @field_validator("group", mode="before")
    @classmethod
    def _car_is_prefix(cls, value):
        return "prefix" if value == "car" else value  # the first name of prefix, still accepted

    @model_validator(mode="after")
    def _fold_exists(self):
        _require(
            self.fold == "all" or 0 <= self.fold < self.folds,
            "fold",
            f"must be in 0..{self.folds - 1} (or 'all'), got {self.fold}",
        )
        return self

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


class ModelParams(_Section):
    arch: Arch
    encoder: str  # none: the seed's networks; else an smp encoder (resnet34, efficientnet-b3, tu-convnext_tiny, ...)
    encoder_weights: str  # imagenet (or another published set), none, or a local .pth / .safetensors file
    base_channels: Union[Annotated[int, Field(ge=1, le=256)], Auto]  # the seed's U-Net has 64
    depth: int = Field(ge=1, le=6)
    bilinear: bool
    deep_supervision: bool

    @property
    def has_encoder(self) -> bool:
        return self.encoder != "none"

    @model_validator(mode="after")
    def _encoder_fits_the_arch(self):
        _require(
            self.has_encoder or self.arch in SEED_ARCHS,
            "arch",
            f"{self.arch} needs an encoder: set {{key}}.encoder (e.g. resnet34, efficientnet-b3, tu-convnext_tiny), "
            f"or use {' or '.join(SEED_ARCHS)} without one",
        )
        _require(
            self.has_encoder or self.encoder_weights == "none",
            "encoder_weights",
            f"needs {{key}}.encoder (e.g. resnet34); without an encoder it must be none, got {self.encoder_weights!r}",
        )
        _require(
            not (self.has_encoder and self.deep_supervision),
            "deep_supervision",
            "is for the seed's unetplusplus only (encoder none); smp's decoders have one head",
        )
        return self

    def kwargs(self) -> dict:
        """Constructor arguments for pipeline.models.factory.create_model (without channels and classes)."""
        if self.has_encoder:
            return {"encoder": self.encoder}
        if self.arch == "unet":
            return {"base_channels": self.base_channels, "depth": self.depth, "bilinear": self.bilinear}
        return {"base_channels": self.base_channels, "depth": self.depth, "deep_supervision": self.deep_supervision}


class AugmentParams(_Section):
    hflip: Union[Probability, Auto]
    vflip: Union[Probability, Auto]
    shift: float = Field(ge=0.0, le=0.5)
    scale: float = Field(ge=0.0, le=0.5)
    rotate: float = Field(ge=0.0, le=45.0)
    brightness: Probability
    contrast: Probability
    saturation: Union[Probability, Auto]
    hue: Union[Annotated[float, Field(ge=0.0, le=0.5)], Auto]


class PseudoLabelParams(_Section):
    source: str  # an experiment name or git revision whose test predictions become labels; "": none
    fraction: float = Field(gt=0.0, le=1.0)  # the share of the test images used, the most confident first


class TrainParams(_Section):
    seed: int
    model: ModelParams
    minutes: float = Field(gt=0.0, le=100_000)  # the time the plan gives training, all folds together
    scale: Union[Annotated[float, Field(ge=0.01, le=4.0)], Auto]  # 1918x1280 at 0.01 is 19x13; above 1: up-sampled
    crop: int | list[int]  # 0: whole images; N or [height, width]: random crops of the scaled images
    epochs: Union[Annotated[int, Field(ge=1, le=10_000)], Auto]
    batch_size: Union[Annotated[int, Field(ge=1, le=4096)], Auto]
    lr: Union[Annotated[float, Field(gt=0.0, lt=1.0)], Auto]
    weight_decay: float = Field(ge=0.0, le=1.0)
    warmup_epochs: float = Field(ge=0.0)
    grad_clip: float = Field(ge=0.0, le=1e6)  # 0 turns clipping off
    accumulate: int = Field(ge=1, le=1024)  # batches per optimizer step
    restarts: int = Field(ge=0, le=1000)  # warm restarts of the cosine schedule (SGDR); 0: one decay
    ema: float = Field(ge=0.0, lt=1.0)  # 0 turns it off
    average_best: int = Field(ge=0, le=100)  # k: best.pt is the average of the k best epochs' weights; 0: off
    bce_weight: Union[Annotated[float, Field(ge=0.0)], Auto]
    dice_weight: Union[Annotated[float, Field(ge=0.0)], Auto]
    augment: AugmentParams
    pseudo_labels: PseudoLabelParams
    amp: bool
    channels_last: bool
    compile: bool
    workers: int = Field(ge=0, le=256)
    init_from: str
    nproc: int = Field(ge=1, le=1024)
    nnodes: int = Field(ge=1, le=1024)
    rdzv_endpoint: str
    rdzv_timeout: float = Field(gt=0, le=86400)  # seconds a node waits for the others before it stops

    @model_validator(mode="after")
    def _consistent(self):
        _require(
            self.nnodes == 1 or re.fullmatch(r"[\w.\-\[\]:]+:\d+", self.rdzv_endpoint) is not None,
            "rdzv_endpoint",
            f"must be host:port (node 0's address, reachable from every node) when train.nnodes > 1, "
            f"got {self.rdzv_endpoint!r}",
        )
        crop = self.crop if isinstance(self.crop, list) else [self.crop]
        _require(
            crop == [0] or (len(crop) in (1, 2) and min(crop) >= 1),
            "crop",
            f"must be 0 (whole images), a size N or [height, width] of at least 1, got {self.crop}",
        )
        _require(
            self.epochs == "auto" or self.warmup_epochs <= self.epochs,
            "warmup_epochs",
            f"must be in [0, train.epochs], got {self.warmup_epochs}",
        )
        _require(
            "auto" in (self.bce_weight, self.dice_weight) or self.bce_weight + self.dice_weight > 0,
            "bce_weight/dice_weight",
            "must not both be 0",
        )
        return self

    @property
    def crop_size(self) -> tuple[int, int] | None:
        """(height, width) of the training crops, or None for whole images."""
        if self.crop == 0:
            return None
        h, w = (self.crop * 2)[:2] if isinstance(self.crop, list) else (self.crop, self.crop)
        return int(h), int(w)


# ----------------------------------------------------------------------------------------------
# evaluate, predict, encode, submit


TTASet = Literal["none", "hflip", "vflip", "hvflip", "d4"]


def tta_set(value):
    """A TTA set's name; true and false, the values of the former flag, are hflip and none."""
    return "hflip" if value is True else "none" if value is False else value


class EvaluateParams(_Section):
    threshold_min: Union[Annotated[float, Field(gt=0.0, lt=1.0)], Auto]
    threshold_max: Union[Annotated[float, Field(gt=0.0, lt=1.0)], Auto]
    empty_rule: Union[bool, Auto]  # search the empty-mask rule (a top threshold and a minimum of pixels above it)
    worst: int = Field(ge=0)
    tta_sets: list[TTASet]  # also scored out of fold, to choose predict.tta

    @model_validator(mode="after")
    def _ordered(self):
        _require(
            "auto" in (self.threshold_min, self.threshold_max) or self.threshold_min <= self.threshold_max,
            "threshold_min/threshold_max",
            f"must satisfy min <= max, got {self.threshold_min}, {self.threshold_max}",
        )
        return self


class BlendParams(_Section):
    members: list[str]  # experiment names or git revisions, each with out-of-fold maps (split.fold: all)

    @model_validator(mode="after")
    def _distinct(self):
        _require(
            all(m.strip() == m and m for m in self.members) and len(set(self.members)) == len(self.members),
            "members",
            f"must be distinct experiment names or git revisions (none empty), got {self.members}",
        )
        _require(len(self.members) != 1, "members", "blends two or more experiments; [] turns blending off")
        return self


class PredictParams(_Section):
    batch_size: int = Field(ge=1, le=4096)
    workers: int = Field(ge=0, le=256)
    tta: Union[TTASet, Auto]  # true / false, the former flag's values, are read as hflip / none
    shard_size: int = Field(ge=1, le=100_000)
    amp: bool
    nproc: int = Field(ge=1, le=1024)
    backend: Literal["torch", "onnxruntime"]

    @field_validator("tta", mode="before")
    @classmethod
    def _tta_name(cls, value):
        return tta_set(value)

    @property
    def mixed_precision(self) -> bool:
        """predict.amp as it applies: ONNX Runtime runs the exported float32 graph, so evaluate then scores float32
        too, and the threshold fits the numbers submitted."""
        return self.amp and self.backend == "torch"


class EncodeParams(_Section):
    threshold: Union[float, Literal["best"]]
    jobs: int

    @model_validator(mode="after")
    def _usable(self):
        _require(
            self.threshold == "best" or 0.0 < self.threshold < 1.0,
            "threshold",
            f"must be in (0, 1) or 'best', got {self.threshold}",
        )
        _require(self.jobs != 0, "jobs", "must be a number of processes (-1: one per core), not 0")
        return self


Slug = Annotated[str, Field(pattern=r"^$|^[a-z0-9][a-z0-9-]{4,48}[a-z0-9]$")]  # Kaggle's: 6 to 50, a-z 0-9 -


class PackageParams(_Section):
    """The kernel bundle of a code competition: what Kaggle's image is, and where the bundle goes on Kaggle."""

    python: Annotated[list[Annotated[str, Field(pattern=r"^3\.\d{1,2}$")]], Field(min_length=1)]
    platform: str = Field(pattern=r"^(manylinux_\d+_\d+|manylinux2014|linux)_(x86_64|aarch64)$")
    preinstalled: list[str]  # Kaggle's own packages: not bundled (their requirements neither)
    bundle: list[str]  # of those, bundle anyway (a newer release than Kaggle's)
    gpu: bool  # the kernel runs on Kaggle's GPU (T4); false: on a CPU
    check_images: int = Field(ge=1, le=1000)  # test images the bundle is tried on, offline, before it is accepted
    max_gb: float = Field(gt=0.0)  # Kaggle's dataset size limit
    owner: str = Field(pattern=r"^$|^[A-Za-z0-9][A-Za-z0-9_-]*$")  # your Kaggle username; "": the credentials'
    dataset: Slug  # "": kseg-<competition>
    kernel: Slug  # "": kseg-<competition>-kernel

    @model_validator(mode="before")
    @classmethod
    def _versions_are_strings(cls, data):
        numbers = [v for v in (data.get("python") or []) if isinstance(v, float)] if isinstance(data, dict) else []
        _require(
            not numbers,
            "python",
            f"must list Python versions as strings, quoted: ['{numbers[0] if numbers else ''}'] (YAML reads an "
            f"unquoted 3.10 as the number 3.1)",
        )
        return data


class SubmitParams(_Section):
    sha256: str  # "": upload nothing; else the first characters of the SHA-256 of the one file (or bundle) to submit
    message: str
    force: bool
    wait: int = Field(ge=0, le=86_400)  # seconds to wait for Kaggle's score after an upload
    via: Literal["auto", "file", "kernel"]  # auto: the competition's own way (Carvana: file, Severstal: kernel)
    kernel_wait: int = Field(ge=0, le=7 * 86_400)  # seconds for Kaggle to process the dataset and run the kernel

    @model_validator(mode="after")
    def _a_hash_or_nothing(self):
        _require(
            self.sha256 == "" or (len(self.sha256) >= 8 and all(c in "0123456789abcdef" for c in self.sha256)),
            "sha256",
            f"must be empty (upload nothing) or at least 8 hex digits of the SHA-256 that the encode stage (a file) or "
            f"the package stage (a kernel's bundle) prints, got {self.sha256!r}",
        )
        return self


class Params(_Section):
    download: DownloadParams
    split: SplitParams
    train: TrainParams
    evaluate: EvaluateParams
    blend: BlendParams
    predict: PredictParams
    encode: EncodeParams
    package: PackageParams
    submit: SubmitParams


# ----------------------------------------------------------------------------------------------
# one-line messages


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Annotated:
        return _type_name(typing.get_args(tp)[0])
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    return getattr(tp, "__name__", str(tp))


def _number(x: float) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


def _range(metadata: list, given: Any) -> str:
    """'must be in 1..4096', 'must be at least 2', 'must be in (0, 1)', ... from a field's constraints."""
    low = next((m for m in metadata if isinstance(m, (at.Ge, at.Gt))), None)
    high = next((m for m in metadata if isinstance(m, (at.Le, at.Lt))), None)
    lo = None if low is None else _number(low.ge if isinstance(low, at.Ge) else low.gt)
    hi = None if high is None else _number(high.le if isinstance(high, at.Le) else high.lt)
    if isinstance(low, at.Ge) and isinstance(high, at.Le) and isinstance(given, int) and isinstance(low.ge, int):
        return f"must be in {lo}..{hi}, got {given}"
    if low is not None and high is not None:
        left, right = "[" if isinstance(low, at.Ge) else "(", "]" if isinstance(high, at.Le) else ")"
        return f"must be in {left}{lo}, {hi}{right}, got {given}"
    if low is not None:
        return f"must be {'at least' if isinstance(low, at.Ge) else 'above'} {lo}, got {given}"
    return f"must be {'at most' if isinstance(high, at.Le) else 'below'} {hi}, got {given}"


_BOUNDS = {
    "greater_than": "above",
    "greater_than_equal": "at least",
    "less_than": "below",
    "less_than_equal": "at most",
}
_WORDS = {
    "int_type": "an integer",
    "bool_type": "true or false",
    "float_type": "a number",
    "finite_number": "a finite number",
    "string_type": "a string",
    "dict_type": "a mapping",
    "list_type": "a list",
    "model_type": "a mapping of keys",
}


def _describe_item(key: str, inner: tuple, kind: str, ctx: dict, given: Any) -> str:
    """A bad key, value or length inside a mapping or list param (download.local.colors)."""
    where = f"{key} key" if "[key]" in inner else key + "".join(f"[{part}]" for part in inner)
    if kind in _BOUNDS:
        return f"{where} must be {_BOUNDS[kind]} {next(iter(ctx.values()))}, got {given!r}"
    limit = ctx.get("min_length" if kind == "too_short" else "max_length")
    return f"{where} must have {'at least' if kind == 'too_short' else 'at most'} {limit} values, got {given!r}"


def _walk(loc: tuple, root: type[BaseModel]) -> tuple[list[str], Any, Any]:
    """(the field names of an error's location, the last field, its annotation) down the models of params.yaml."""
    model, field, names = root, None, []
    for part in loc:
        fields = model.model_fields if isinstance(model, type) and issubclass(model, BaseModel) else {}
        if part not in fields:
            break
        names.append(str(part))
        field = fields[part]
        model = field.annotation
    return names, field, model


def _describe_union(key: str, annotation: Any, kind: str, inner: tuple, given: Any) -> str:
    """A bad value of a param of several types (pydantic tried each): a number out of range of a param that also
    takes `auto`, or the param's whole type."""
    if kind in _BOUNDS and len(inner) == 1:
        member = next(a for a in typing.get_args(annotation) if typing.get_origin(a) is Annotated)
        limits = [m for info in typing.get_args(member)[1:] for m in getattr(info, "metadata", [info])]
        return f"{key} {_range(limits, given)} (or auto: the plan's)"
    if kind in _WORDS and len(inner) == 1:
        return f"{key} must be {_WORDS[kind]} or 'auto' (the plan's), got {given!r}"
    return f"{key} must be {'one of ' if kind == 'literal_error' else ''}{_type_name(annotation)}, got {given!r}"


def _describe(error: dict, root: type[BaseModel], prefix: str) -> str:
    """One line for pydantic's first error, naming the key as params.yaml spells it."""
    names, field, model = _walk(error["loc"], root)
    key = ".".join(([prefix] if prefix else []) + names)
    kind, given = error["type"], error.get("input")
    inner = error["loc"][len(names) :]  # inside a mapping or list: its keys and indices
    if field is not None and typing.get_origin(field.annotation) in (Union, types.UnionType) and inner:
        return _describe_union(key, field.annotation, kind, inner, given)
    if inner and kind in (*_BOUNDS, "too_short", "too_long"):
        return _describe_item(key, inner, kind, error["ctx"], given)
    if kind == "value_error":
        return str(error["ctx"]["error"]).replace("{key}", key)
    if kind == "missing":
        return f"params.yaml lacks {key}; add it (see README, 'Params')"
    if kind == "extra_forbidden":
        unknown = ".".join(([key] if key else []) + [str(error["loc"][len(names)])])
        return f"unknown key {unknown} in params.yaml; known keys here: {', '.join(model.model_fields)}"
    if kind == "literal_error" and field is not None:
        return f"{key} must be one of {_type_name(field.annotation)}, got {given!r}"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal") and field is not None:
        return f"{key} {_range(field.metadata, given)}"
    if kind in _WORDS:
        return f"{key} must be {_WORDS[kind]}, got {given!r}"
    if kind == "string_pattern_mismatch":
        return f"{key} must match {error['ctx']['pattern']} (see params.yaml's comment on it), got {given!r}"
    return f"{key}: {error['msg']}, got {given!r}"


def _validate(model: type[BaseModel], data: Any, prefix: str = ""):
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise ParamError(_describe(err.errors()[0], model, prefix)) from None


def _keys(model: type[BaseModel], prefix: str = "") -> dict[type, str]:
    """Each section model's key in params.yaml (train.model, download.local, ...)."""
    found = {model: prefix}
    for name, field in model.model_fields.items():
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            found.update(_keys(field.annotation, f"{prefix}.{name}" if prefix else name))
    return found


KEYS = _keys(Params)
M = TypeVar("M", bound=BaseModel)


def replace(section: M, **changes) -> M:
    """A copy of a params model with some values changed, validated like params.yaml itself."""
    return _validate(type(section), {**section.model_dump(), **changes}, KEYS[type(section)])


def load(*sections: str, path: str | Path = "params.yaml", overrides: list[str] = ()) -> dict[str, Any]:
    """Load params.yaml, validate every section, and return the named ones (all when none is named).

    Every section is checked whichever stage runs first, so a typo in predict.* stops `dvc repro` before
    hours of training rather than after. `overrides` are `dvc exp run -S` strings (`train.scale=0.5`, the value
    read as YAML), applied before the check.
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
        names = ", ".join(Params.model_fields)
        raise ParamError(f"{path} must be a mapping of sections ({names}), got {type(data).__name__}")
    for item in overrides:
        _override(data, item)
    checked = _validate(Params, data)
    return {name: getattr(checked, name) for name in sections or Params.model_fields}


def _override(data: dict, item: str) -> None:
    """Set `key.path=value` in the loaded params, as `dvc exp run -S` does."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    key, sep, raw = item.partition("=")
    if not sep or not key:
        raise ParamError(f"-S {item!r} is not key=value (e.g. -S train.scale=0.5)")
    *parents, last = key.split(".")
    node = data
    for part in parents:
        node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, dict):
            raise ParamError(f"-S {item!r}: params.yaml has no section {key.rsplit('.', 1)[0]}")
    try:
        node[last] = YAML(typ="safe", pure=True).load(raw) if raw else ""
    except YAMLError:
        raise ParamError(f"-S {item!r}: the value is not valid YAML") from None


def flat(data: Any, prefix: str = "") -> dict[str, Any]:
    """{'train.augment.flip': value, ...}: nested params as dotted keys, as `dvc exp run -S` names them."""
    if isinstance(data, dict):
        return {k: v for key, value in data.items() for k, v in flat(value, f"{prefix}{key}.").items()}
    return {prefix[:-1]: data}


def check_unchanged(used: dict[str, Any], path: str | Path = "params.yaml") -> None:
    """Fail when params.yaml no longer holds the values a stage ran with (`used`: what `load` returned).

    DVC writes params.yaml before it starts a stage and reads it again when the stage ends, to lock it; an edit in
    between (a refused `dvc exp run -S`, a hand edit) would otherwise be locked as the params of outputs made with
    the old values. Stages call this last, so that DVC records nothing and the next run makes them again.
    """
    now = load(*used, path=path)
    before = flat({name: as_dict(section) for name, section in used.items()})
    after = flat({name: as_dict(section) for name, section in now.items()})
    changed = [key for key in before if before[key] != after.get(key)]
    if changed:
        key = changed[0]
        raise ParamError(
            f"params.yaml changed while this stage ran ({key}: {before[key]!r} then {after.get(key)!r}): its outputs "
            f"were made with the old values, so DVC must not lock the new ones; run the same command again"
        )


def as_dict(section: BaseModel) -> dict:
    """Plain-dict form of a params model (for fingerprints and checkpoints)."""
    return section.model_dump()
