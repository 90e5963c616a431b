"""smp encoders: the factory's errors, pad-and-crop, weights from local files and offline, ONNX, torch.hub.

No test touches the network: `encoder_weights: imagenet` is tried against the closed proxy of conftest and
must stop at once with a message; local weights files are written here.
"""

from __future__ import annotations

import time

import pytest
import torch
import torch.nn.functional as F

from pipeline import params
from pipeline.images import IMAGENET
from pipeline.models import checkpoint, encoders
from pipeline.models.factory import count_parameters, create_model
from pipeline.prediction import onnx_export
from pipeline.prediction.inference import probabilities
from pipeline.prediction.onnx_runtime import OnnxModel
from tests.conftest import ROOT, open_carvana, tiny_train_params

pytest.importorskip("segmentation_models_pytorch")


@pytest.fixture(scope="module")
def resnet18_unet():
    torch.manual_seed(0)
    return create_model("unet", encoder="resnet18", in_channels=3, classes=1).eval()


def _model_params(**changes):
    base = params.load(path=ROOT / "params.yaml")["train"].model
    return params.replace(base, **changes)


def test_params_name_the_key_for_an_arch_without_an_encoder_and_weights_without_one():
    with pytest.raises(params.ParamError, match="train.model.arch fpn needs an encoder: set train.model.encoder"):
        _model_params(arch="fpn")
    with pytest.raises(params.ParamError, match="train.model.encoder_weights needs train.model.encoder"):
        _model_params(encoder_weights="imagenet")
    with pytest.raises(params.ParamError, match="train.model.deep_supervision is for the seed's unetplusplus"):
        _model_params(arch="unetplusplus", encoder="resnet18", deep_supervision=True)
    assert _model_params(arch="fpn", encoder="resnet34").kwargs() == {"encoder": "resnet34"}


def test_unknown_encoders_get_close_suggestions():
    with pytest.raises(encoders.EncoderError, match=r"unknown encoder .resnet35.; e.g. resnet\d+, resnet34"):
        encoders.check_encoder("resnet35")
    with pytest.raises(
        encoders.EncoderError, match="timm has no model 'convnext_tinyy'; did you mean tu-convnext_tiny"
    ):
        encoders.check_encoder("tu-convnext_tinyy")


def test_parameter_counts_match_smp_and_the_seed():
    import segmentation_models_pytorch as smp

    ours = create_model("unet", encoder="resnet34", in_channels=3, classes=1)
    assert count_parameters(ours) == count_parameters(smp.Unet("resnet34", encoder_weights=None))
    assert round(count_parameters(ours) / 1e6, 1) == 24.4
    assert round(count_parameters(create_model("unet", in_channels=3, classes=1, base_channels=64)) / 1e6, 1) == 17.3


@pytest.mark.parametrize("shape", [(1, 3, 160, 240), (2, 3, 37, 61), (1, 3, 128, 222)])  # 222 = 1918 mod 32 + 192
def test_pad_and_crop_is_the_plain_forward_on_the_padded_image(resnet18_unet, shape):
    x = torch.randn(*shape)
    with torch.inference_mode():
        out = resnet18_unet(x)
        h, w = shape[-2:]
        padded = F.pad(x, (0, (32 - w % 32) % 32, 0, (32 - h % 32) % 32), mode="replicate")
        plain = resnet18_unet.net(padded)[..., :h, :w]
        pipeline = probabilities([resnet18_unet], x)
    assert out.shape == (shape[0], 1, h, w)
    assert torch.equal(out, plain)
    assert torch.allclose(pipeline, torch.sigmoid(plain), atol=1e-6)


def test_local_weights_files_load_exactly_and_mismatches_are_named(resnet18_unet, tmp_path):
    from safetensors.torch import save_file

    encoder_state = {k: v.clone() for k, v in resnet18_unet.net.encoder.state_dict().items()}
    torch.save({**encoder_state, "fc.weight": torch.zeros(1000, 512)}, tmp_path / "encoder.pth")
    save_file(
        {k: v.contiguous() for k, v in resnet18_unet.net.state_dict().items()}, str(tmp_path / "whole.safetensors")
    )
    for name in ("encoder.pth", "whole.safetensors"):
        torch.manual_seed(1)
        fresh = create_model("unet", encoder="resnet18", in_channels=3, classes=1)
        skipped = encoders.load_weights(fresh, "resnet18", str(tmp_path / name), 3)
        mine = fresh.net.encoder.state_dict()
        assert all(torch.equal(mine[k], v) for k, v in encoder_state.items())
        assert skipped == (["net.encoder.fc.weight (not in this model)"] if name == "encoder.pth" else [])
    one_channel = create_model("unet", encoder="resnet18", in_channels=1, classes=1)
    skipped = encoders.load_weights(one_channel, "resnet18", str(tmp_path / "encoder.pth"), 1)
    assert "net.encoder.conv1.weight (shape (64, 3, 7, 7) here (64, 1, 7, 7))" in skipped
    with pytest.raises(encoders.EncoderError, match="missing.pth does not exist"):
        encoders.load_weights(one_channel, "resnet18", str(tmp_path / "missing.pth"), 1)


def test_imagenet_without_network_stops_at_once_naming_a_local_file(resnet18_unet):
    started = time.perf_counter()
    with pytest.raises(encoders.EncoderError) as err:
        encoders.load_weights(resnet18_unet, "resnet18", "imagenet", 3)
    assert time.perf_counter() - started < 10  # huggingface_hub alone retries for about 25 s
    message = str(err.value)
    assert "cannot download the resnet18 weights" in message and "local .pth or .safetensors file" in message
    assert "\n" not in message
    with pytest.raises(encoders.EncoderError, match="resnet18 publishes imagenet.*not 'instagram'"):
        encoders.load_weights(resnet18_unet, "resnet18", "instagram", 3)


def test_a_checkpoint_rebuilds_the_encoder_model_and_onnx_runtime_agrees(tiny_demo, tmp_path):
    import pandas as pd

    from pipeline import training
    from pipeline.data import preprocess, split

    p = tiny_train_params(epochs=1, model=_model_params(encoder="resnet18"), scale=1.0, crop=[64, 96])
    comp = open_carvana(tiny_demo)
    masks = pd.read_csv(tiny_demo / "train_masks.csv", dtype=str, keep_default_na=False)
    names = masks["img"].tolist()
    table = split.make_folds(names, [0.0] * len(names), [n[:12] for n in names], folds=3, seed=0, stratify=False,
                             label="car")  # fmt: skip
    training.train_fold(p, training.setup(p), comp, table, 0, tmp_path / "m", progress=False)
    ckpt = checkpoint.load(tmp_path / "m/best.pt")
    assert ckpt["model"] == {"arch": "unet", "in_channels": 3, "classes": 1, "encoder": "resnet18"}
    assert ckpt["preprocess"]["mean"] == list(IMAGENET["mean"])
    model = checkpoint.build_model(ckpt)
    onnx_path = onnx_export.export(tmp_path / "m/best.pt", tmp_path / "m.onnx")
    session = OnnxModel(onnx_path)
    pre = preprocess.Preprocess.from_dict({**ckpt["preprocess"], "size": [160, 240]})  # 1918x1280 at scale 0.125
    name = comp.test.names()[0]
    x = pre.load(comp.test.read(name), name)[0][None]
    with torch.inference_mode():
        exact = torch.sigmoid(checkpoint.build_model(ckpt).double()(x.double()))
    torch_error = (probabilities([model], x).double() - exact).abs().max().item()
    onnx_error = (probabilities([session], x).double() - exact).abs().max().item()
    # one epoch on 32 tiny images leaves logits of +-3000, where float32 itself is 1e-4 off: ONNX Runtime must not
    # add to that error
    assert onnx_error <= 2 * torch_error + 1e-6


def test_onnx_runtime_matches_an_smp_model_to_1e_4_at_the_model_scale(resnet18_unet, tmp_path):
    pre = {
        "size": [160, 240],
        "original": [1280, 1918],
        "channels": 3,
        **{k: list(v) for k, v in IMAGENET.items()},
    }
    config = {"arch": "unet", "in_channels": 3, "classes": 1, "encoder": "resnet18"}
    payload = {"model": config, "preprocess": pre, "class_names": ["background", "car"]}
    checkpoint.save(tmp_path / "m.pt", {**payload, "state_dict": resnet18_unet.state_dict()})
    session = OnnxModel(onnx_export.export(tmp_path / "m.pt", tmp_path / "m.onnx"))
    x = torch.randn(2, 3, 160, 240)
    assert (probabilities([session], x) - probabilities([resnet18_unet], x)).abs().max().item() < 1e-4


def test_multi_class_encoder_models_give_a_channel_per_class():
    model = create_model("deeplabv3plus", encoder="resnet18", in_channels=1, classes=5).eval()
    assert model(torch.randn(2, 1, 45, 77)).shape == (2, 5, 45, 77)


def test_torch_hub_builds_an_encoder_model():
    model = torch.hub.load(str(ROOT), "unet", source="local", encoder="resnet18", arch="fpn")
    assert isinstance(model, encoders.EncoderModel) and model.preprocess["std"] == IMAGENET["std"]
    assert model.eval()(torch.randn(1, 3, 50, 70)).shape == (1, 1, 50, 70)
