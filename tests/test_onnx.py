"""ONNX export and ONNX Runtime inference: parity with torch, the CLI, the predict backend."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.competitions.archive import ImageArchive
from pipeline.models import checkpoint
from pipeline.prediction import onnx_export, predict, shards
from pipeline.prediction.inference import probabilities
from pipeline.prediction.onnx_runtime import OnnxError, OnnxModel
from pipeline.prediction.predictor import load_predictor
from tests.conftest import carvana, float32, open_carvana, write_test_images

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def exported(tiny_model, tmp_path_factory):
    return onnx_export.export(tiny_model, tmp_path_factory.mktemp("onnx") / "model.onnx")


@pytest.mark.parametrize("shape", [(1, 3, 1280, 1918), (2, 3, 61, 95), (3, 3, 48, 80)])
def test_onnx_runtime_matches_torch_on_any_batch_and_size(tiny_model, exported, shape):
    torch_model = checkpoint.build_model(checkpoint.load(tiny_model))
    session = OnnxModel(exported)
    x = torch.randn(*shape)
    expected = probabilities([torch_model], x)
    got = probabilities([session], x)
    assert got.shape == expected.shape
    assert (got - expected).abs().max().item() < 1e-4


def test_the_predict_backend_gives_the_same_shards(tiny_demo, tiny_model, exported, tmp_path):
    names = open_carvana(tiny_demo).test_names
    archive = ImageArchive(tiny_demo / "test.zip")
    maps = {}
    for label, path in (("torch", tiny_model), ("onnx", exported)):
        predictor = load_predictor([path], CPU)
        predict.predict_test_set(
            predictor, archive, names, tmp_path / label, competition="carvana-image-masking-challenge", rt=float32(),
            tta="hflip", shard_size=8, batch_size=4, workers=0, settings={"backend": label},
        )  # fmt: skip
        maps[label] = [p for k in range(2) for _, _, p in shards.read_shard(tmp_path / label / shards.shard_name(k))]
    for a, b in zip(maps["torch"], maps["onnx"], strict=True):
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1  # uint8 rounding of values equal to 1e-4


def test_export_and_predict_from_the_command_line(tiny_demo, tiny_model, tmp_path):
    out = carvana("export", "-m", tiny_model, "-o", tmp_path / "m.onnx").stdout
    assert "any size" in out
    (image,) = write_test_images(tiny_demo, tmp_path, 1)
    carvana("predict", "-m", tmp_path / "m.onnx", "-i", image, "-o", tmp_path / "mask.png")
    assert (tmp_path / "mask.png").is_file()


def test_an_onnx_file_from_another_model_is_refused(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    plain = tmp_path / "plain.onnx"
    graph = helper.make_graph(
        [helper.make_node("Identity", ["image"], ["logits"])],
        "other",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", 3, "h", "w"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", 3, "h", "w"])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(plain))
    with pytest.raises(OnnxError, match="not exported by this pipeline"):
        OnnxModel(plain)
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(OnnxError, match="not a loadable ONNX model"):
        OnnxModel(tmp_path / "junk.onnx")


def test_export_never_overwrites_its_checkpoint_and_keeps_the_opset_asked_for(tiny_model, tmp_path):
    import onnx

    before = tiny_model.read_bytes()
    proc = carvana("export", "-m", tiny_model, "-o", tiny_model, check=False)
    assert proc.returncode == 1 and "the checkpoint itself: choose another -o" in proc.stderr
    assert "Traceback" not in proc.stderr and tiny_model.read_bytes() == before
    (tmp_path / "file").write_text("")
    proc = carvana("export", "-m", tiny_model, "-o", tmp_path / "file" / "m.onnx", check=False)
    assert (
        proc.returncode == 1
        and "cannot write" in proc.stderr
        and "file)" in proc.stderr
        and "Traceback" not in proc.stderr
    )
    out = tmp_path / "old.onnx"
    try:  # the exporter may or may not convert down: either the file is at 17, or nothing is written
        onnx_export.export(tiny_model, out, opset=17)
        assert [o.version for o in onnx.load(str(out)).opset_import if o.domain in ("", "ai.onnx")] == [17]
    except onnx_export.ExportError as err:
        assert "at opset 17 (it wrote 18): use --opset 18" in str(err)
        assert list(tmp_path.glob("old.onnx*")) == []


def test_masks_refuses_a_threshold_outside_0_1(tmp_path):
    proc = carvana("masks", "-p", tmp_path, "-t", "7", "-o", tmp_path / "m", check=False)
    assert proc.returncode == 1 and "--threshold must be in (0, 1), got 7.0" in proc.stderr
