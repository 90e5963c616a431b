"""Predicting the test set into shards: resumable, never stale, errors that keep finished work."""

from __future__ import annotations

import gzip
import io
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline.competitions.archive import ImageArchive
from pipeline.data import preprocess
from pipeline.images import ImageError
from pipeline.masks import rle
from pipeline.models import checkpoint
from pipeline.prediction import predict, shards
from pipeline.prediction.predictor import PredictorError, load_predictor
from pipeline.submission import encode
from tests.conftest import encode_carvana, float32, open_carvana, train_tiny

CPU = torch.device("cpu")


def _run(predictor, archive, names, out, shard_size=5, tta="none"):
    return predict.predict_test_set(
        predictor,
        archive,
        names,
        out,
        competition="carvana-image-masking-challenge",
        rt=float32(),
        tta=tta,
        shard_size=shard_size,
        batch_size=4,
        workers=0,
    )


def test_normalize_follows_the_formula_for_uint8_and_float_and_leaves_its_input_alone():
    pre = preprocess.Preprocess.for_data((16, 24), 1.0, 3)
    pixels = torch.randint(0, 256, (2, 3, 16, 24), dtype=torch.uint8)
    mean, std = torch.tensor(pre.mean).view(3, 1, 1), torch.tensor(pre.std).view(3, 1, 1)
    expected = (pixels.double() / 255 - mean.double()) / std.double()
    assert torch.allclose(pre.normalize(pixels).double(), expected, atol=1e-6)
    unit = pixels.float() / 255
    before = unit.clone()
    assert torch.allclose(pre.normalize(unit).double(), expected, atol=1e-6)
    assert torch.equal(unit, before)


def _test_names(raw):
    return open_carvana(raw).test_names


def test_shards_hold_every_image_in_order_and_encode_to_a_valid_submission(
    tiny_demo, tiny_model, tmp_path, monkeypatch
):
    predictor = load_predictor([tiny_model], CPU)
    names = _test_names(tiny_demo)
    assert _run(predictor, ImageArchive(tiny_demo / "test.zip"), names, tmp_path / "pred") == 4  # 16 images / 5
    seen = [n for k in range(4) for n, _, _ in shards.read_shard(tmp_path / "pred" / shards.shard_name(k))]
    assert seen == names
    recorded = shards.check_manifest(tmp_path / "pred")["test_set"]  # what a pseudo-label round checks
    content = ImageArchive(tiny_demo / "test.zip").content(names)
    assert recorded == {"competition": "carvana-image-masking-challenge", "content": content}
    name, size, probs = next(shards.read_shard(tmp_path / "pred" / shards.shard_name(0)))
    assert size == (96, 160) and probs.shape == (1, 48, 80) and probs.dtype == np.uint8
    stats = encode_carvana(tmp_path / "pred", names, tmp_path / "sub.csv.gz", 0.5, jobs=2)
    assert stats["rows"] == 16
    import pandas as pd

    table = pd.read_csv(tmp_path / "sub.csv.gz", dtype=str, keep_default_na=False)  # multi-member gzip reads as one
    assert list(table.columns) == ["img", "rle_mask"] and list(table["img"]) == names
    monkeypatch.setattr(encode, "PIECE", 2)  # shards of 5 encoded as pieces of 2, 2 and 1: the same rows
    encode_carvana(tmp_path / "pred", names, tmp_path / "pieces.csv.gz", 0.5, jobs=2)
    assert gzip.open(tmp_path / "pieces.csv.gz").read() == gzip.open(tmp_path / "sub.csv.gz").read()


def test_an_interrupted_run_keeps_finished_shards_and_does_not_redo_them(tiny_demo, tiny_model, tmp_path, monkeypatch):
    predictor = load_predictor([tiny_model], CPU)
    names, archive, out = _test_names(tiny_demo), ImageArchive(tiny_demo / "test.zip"), tmp_path / "pred"
    original = shards.ShardWriter.close
    closed = {"n": 0}

    def dies_after_two_shards(self):
        original(self)
        closed["n"] += 1
        if closed["n"] == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(shards.ShardWriter, "close", dies_after_two_shards)
    with pytest.raises(KeyboardInterrupt):
        _run(predictor, archive, names, out)
    monkeypatch.setattr(shards.ShardWriter, "close", original)
    finished = {p.name: p.stat().st_mtime_ns for p in out.glob("shard-*.zip")}
    assert sorted(finished) == ["shard-00000.zip", "shard-00001.zip"] and not list(out.glob("*.part"))
    assert _run(predictor, archive, names, out) == 2  # only the two missing shards
    assert all((out / n).stat().st_mtime_ns == t for n, t in finished.items())
    shards.check_complete(out)


def test_a_changed_model_or_setting_deletes_the_stale_shards(tiny_demo, tiny_model, tmp_path, capsys):
    predictor = load_predictor([tiny_model], CPU)
    names, archive, out = _test_names(tiny_demo), ImageArchive(tiny_demo / "test.zip"), tmp_path / "pred"
    _run(predictor, archive, names, out)
    assert _run(predictor, archive, names, out) == 0
    assert _run(predictor, archive, names, out, tta="hflip") == 4
    assert "the old shards were deleted" in capsys.readouterr().out


def _with_member(src, dest, name, data):
    with zipfile.ZipFile(src) as z_in, zipfile.ZipFile(dest, "w") as z_out:
        for info in z_in.infolist():
            z_out.writestr(info, data if info.filename.endswith(name) else z_in.read(info))


def test_a_corrupt_test_image_is_named_and_finished_shards_are_kept(tiny_demo, tiny_model, tmp_path):
    names = _test_names(tiny_demo)
    broken = tmp_path / "test.zip"
    original = ImageArchive(tiny_demo / "test.zip").read(names[7])
    _with_member(tiny_demo / "test.zip", broken, names[7], original[: len(original) // 3])
    predictor = load_predictor([tiny_model], CPU)
    with pytest.raises(ImageError, match=f"{names[7]} is not a readable image"):
        _run(predictor, ImageArchive(broken), names, tmp_path / "pred")
    assert [p.name for p in (tmp_path / "pred").glob("shard-*")] == ["shard-00000.zip"]


def test_a_test_image_of_another_size_is_predicted_and_encoded_at_its_own_size(tiny_demo, tiny_model, tmp_path, capsys):
    names = _test_names(tiny_demo)
    buf = io.BytesIO()
    view = Image.open(io.BytesIO(ImageArchive(tiny_demo / "test.zip").read(names[1])))
    view.resize((192, 108)).save(buf, "JPEG")  # another car view at 192x108 among the 160x96 test images
    odd = tmp_path / "test.zip"
    _with_member(tiny_demo / "test.zip", odd, names[0], buf.getvalue())
    assert _run(load_predictor([tiny_model], CPU), ImageArchive(odd), names, tmp_path / "pred") == 4
    assert "1 test image(s) are not 160x96 like the training images" in capsys.readouterr().out
    stats = encode_carvana(tmp_path / "pred", names, tmp_path / "sub.csv.gz", 0.5, jobs=1)
    rows = encode.read(tmp_path / "sub.csv.gz")
    assert stats["rows"] == 16
    rle.validate(rows[names[0]], (108, 192))  # encoded for its own size


def test_models_that_do_not_match_are_not_averaged(tiny_model, tiny_multiclass, tmp_path):
    train_tiny(tiny_multiclass, tmp_path / "multi", epochs=1)
    with pytest.raises(PredictorError, match="predicts 5 class.*models to average must match"):
        load_predictor([tiny_model, tmp_path / "multi/best.pt"], CPU)
    torch.save({"weight": torch.zeros(1)}, tmp_path / "plain.pt")
    with pytest.raises(checkpoint.CheckpointError, match="not written by this pipeline"):
        load_predictor([tmp_path / "plain.pt"], CPU)
    edited = torch.load(tiny_model, weights_only=True)
    edited["model"]["classes"] = 5
    torch.save(edited, tmp_path / "edited.pt")
    with pytest.raises(checkpoint.CheckpointError, match="do not fit the unet it describes"):
        load_predictor([tmp_path / "edited.pt"], CPU)


@pytest.mark.parametrize(
    "entry, said",
    [
        ({"size": [12, 20], "original": [96, 160], "channels": 3}, "is not one this pipeline writes"),
        ({"size": "big", "original": [96, 160], "channels": 3, "mean": [0, 0, 0], "std": [1, 1, 1]}, "out of range"),
        ({"size": [12, 20], "original": [96, 160], "channels": 3, "mean": [0.5], "std": [0.25]}, "out of range"),
        ({"size": [12, 20], "original": [96, 160], "channels": 3, "mean": [0, 0, 0], "std": [1, 0, 1]}, "out of range"),
    ],
)
def test_a_checkpoint_with_a_damaged_preprocess_entry_is_named(tiny_model, tmp_path, entry, said):
    from pipeline.models import checkpoint
    from pipeline.prediction.predictor import PredictorError, load_predictor

    ckpt = checkpoint.load(tiny_model)
    checkpoint.save(tmp_path / "edited.pt", {**{k: v for k, v in ckpt.items() if k != "format"}, "preprocess": entry})
    with pytest.raises(PredictorError, match=f"edited.pt: its preprocess entry .* {said}.*train it again"):
        load_predictor([tmp_path / "edited.pt"])
    assert load_predictor([tiny_model]).pre.size == tuple(ckpt["preprocess"]["size"])
