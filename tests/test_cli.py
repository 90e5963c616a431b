"""The `kseg` command line (and `carvana`, its first name)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from pipeline.models import checkpoint
from tests.conftest import ROOT, carvana, edit_yaml, write_test_images


def _params(tmp_path):
    path = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", path)
    edit_yaml(path, lambda d: d["train"]["model"].update(base_channels=4, depth=2))
    edit_yaml(path, lambda d: d["train"].update(workers=0, warmup_epochs=0))
    return path


def test_train_with_the_seed_flags(tiny_demo, tmp_path):
    out = carvana(
        "train",
        "-e",
        "1",
        "-b",
        "4",
        "-l",
        "0.001",
        "-s",
        "0.5",
        "-v",
        "34",
        "--data",
        tiny_demo,
        "--out",
        tmp_path / "ckpt",
        "--params",
        _params(tmp_path),
    ).stdout
    assert "48 images, 16 of them held out for validation (1 fold of 3" in out
    best = checkpoint.load(tmp_path / "ckpt/best.pt")
    assert best["preprocess"]["size"] == [48, 80] and best["epoch"] == 1
    again = carvana(
        "train",
        "-e",
        "1",
        "-b",
        "4",
        "-s",
        "0.5",
        "-v",
        "34",
        "--load",
        tmp_path / "ckpt/best.pt",
        "--data",
        tiny_demo,
        "--out",
        tmp_path / "tuned",
        "--params",
        _params(tmp_path),
    ).stdout
    assert "initialised from" in again


def test_bad_flags_get_one_line_errors(tiny_demo, tmp_path):
    proc = carvana("train", "-s", "0", "--data", tiny_demo, "--params", _params(tmp_path), check=False)
    assert proc.returncode == 1 and "train.scale must be in [0.01, 4], got 0.0" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = carvana("train", "--classes", "2", "--data", tiny_demo, "--params", _params(tmp_path), check=False)
    assert "--classes 2 does not match" in proc.stderr
    proc = carvana(
        "train",
        "--load",
        tmp_path / "nope.pt",
        "-e",
        "1",
        "-v",
        "34",
        "--data",
        tiny_demo,
        "--params",
        _params(tmp_path),
        "--out",
        tmp_path / "x",
        check=False,
    )
    assert "nope.pt does not exist" in proc.stderr


def test_predict_writes_masks_overlays_and_rle(tiny_demo, tiny_model, tmp_path):
    import numpy as np
    from PIL import Image

    from pipeline.masks import rle

    a, b = write_test_images(tiny_demo, tmp_path)
    proc = carvana(
        "predict",
        "-m",
        tiny_model,
        "-i",
        a,
        b,
        "-o",
        tmp_path / "a.png",
        tmp_path / "b.png",
        "--viz",
        "--rle",
        "-t",
        "0.4",
    )
    mask = np.asarray(Image.open(tmp_path / "a.png"))
    assert mask.shape == (96, 160) and set(np.unique(mask)) <= {0, 255}
    assert (tmp_path / "a_viz.png").is_file() and (tmp_path / "b_viz.png").is_file()
    line = proc.stdout.splitlines()[0]
    assert line.startswith(a.name + ",")
    assert np.array_equal(rle.decode(line.split(",", 1)[1], (96, 160)) * 255, mask)


def test_predict_default_names_no_save_and_errors(tiny_demo, tiny_model, tmp_path):
    (a,) = write_test_images(tiny_demo, tmp_path, 1)
    carvana("predict", "-m", tiny_model, "-i", a, "-s", "0.25")
    assert (tmp_path / f"{a.stem}_OUT.png").is_file()
    carvana("predict", "-m", tiny_model, "-i", a, "-o", tmp_path / "x.png", "--no-save", "--rle")
    assert not (tmp_path / "x.png").exists()
    proc = carvana("predict", "-m", tiny_model, "-i", a, a, "-o", tmp_path / "x.png", check=False)
    assert "2 input(s) but 1 output name(s)" in proc.stderr
    proc = carvana("predict", "-m", tmp_path / "missing.pt", "-i", a, check=False)
    assert "missing.pt does not exist" in proc.stderr and "Traceback" not in proc.stderr
    before = a.read_bytes(), tiny_model.read_bytes()
    for target, said in [(a, "is an input"), (tiny_model, "is the model"), (tmp_path / "m.pt", ".pt is not a picture")]:
        proc = carvana("predict", "-m", tiny_model, "-i", a, "-o", target, check=False)
        assert proc.returncode == 1 and said in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert (a.read_bytes(), tiny_model.read_bytes()) == before and not (tmp_path / "m.pt").exists()


def test_a_full_disk_leaves_no_empty_mask(tiny_demo, tiny_model, tmp_path, monkeypatch, capsys):
    import errno

    from PIL import Image

    from pipeline import cli

    (a,) = write_test_images(tiny_demo, tmp_path, 1)

    def full(self, fp, *args, **kwargs):
        Path(fp).write_bytes(b"")  # the file is opened, then nothing more fits
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", full)
    with pytest.raises(SystemExit) as stop:
        cli.main(["predict", "-m", str(tiny_model), "-i", str(a), "-o", str(tmp_path / "m.png")])
    assert stop.value.code == 1 and "cannot write" in capsys.readouterr().err
    assert not [f for f in tmp_path.iterdir() if f.name.startswith(("m.png", ".m.png"))]


def test_predict_uses_what_evaluate_chose_for_this_very_checkpoint(tiny_demo, tiny_model, tiny_submission, tmp_path):
    from pipeline.masks import recipe, rle
    from pipeline.masks.postprocess import Rule
    from pipeline.masks.scoring import dice
    from pipeline.submission import encode

    images = write_test_images(tiny_demo, tmp_path, 3)
    recipe.write(tmp_path / "predictor.json", [tiny_model], [Rule(0.5)], False, True)  # how tiny_submission was made
    proc = carvana(
        "predict", "-m", tiny_model, "-i", *images, "--no-save", "--rle", "--recipe", tmp_path / "predictor.json"
    )
    assert "threshold 0.500 (evaluate), TTA none" in proc.stderr
    submitted = encode.read(tiny_submission)
    for line in proc.stdout.splitlines():
        name, code = line.split(",", 1)
        assert dice(rle.decode(code, (96, 160)), rle.decode(submitted[name], (96, 160))) > 0.999

    recipe.write(tmp_path / "other.json", [tiny_model], [Rule(0.3)], True, True)
    proc = carvana("predict", "-m", tiny_model, "-i", images[0], "--no-save", "--recipe", tmp_path / "other.json")
    assert "threshold 0.300 (evaluate), TTA hflip" in proc.stderr
    proc = carvana("predict", "-m", tiny_model, "-i", images[0], "--no-save", "--recipe", tmp_path / "other.json",
                   "-t", "0.6", "--no-tta")  # fmt: skip
    assert "threshold 0.600 (given), TTA none" in proc.stderr
    (tmp_path / "other.pt").write_bytes(b"another model")
    recipe.write(tmp_path / "stale.json", [tmp_path / "other.pt"], [Rule(0.3)], False, True)
    proc = carvana("predict", "-m", tiny_model, "-i", images[0], "--no-save", "--recipe", tmp_path / "stale.json")
    assert "threshold 0.500 (default), TTA hflip" in proc.stderr  # chosen for other bytes: not used


def test_both_installed_console_scripts_give_the_same_help_and_one_line_errors(tmp_path):
    outputs = []
    for name in ("kseg", "carvana"):  # the entry points pip installed beside this Python
        script = Path(sys.executable).with_name(name)
        assert script.is_file(), f"{name} is not installed: pip install -e '.[pipeline]'"
        proc = subprocess.run([str(script), "--help"], capture_output=True, text=True)
        assert proc.returncode == 0 and "predict" in proc.stdout and "submissions" in proc.stdout
        bad = subprocess.run(
            [str(script), "predict", "-m", str(tmp_path / "none.pt"), "-i", "x.jpg"], capture_output=True, text=True
        )
        assert bad.returncode == 1 and bad.stderr.startswith("error: ") and "Traceback" not in bad.stderr, bad.stderr
        outputs.append((proc.stdout, bad.stderr))
    assert outputs[0] == outputs[1] and outputs[0][0].startswith("usage: kseg")


def test_predict_refuses_bad_models_inputs_and_outputs_in_one_line(tiny_model, tiny_demo, tmp_path, monkeypatch):
    import torch

    image = write_test_images(tiny_demo, tmp_path, 1)[0]
    (tmp_path / "text.pt").write_text("a text file\n")
    (tmp_path / "empty.pt").write_bytes(b"")
    torch.save({"format": checkpoint.FORMAT, "epoch": 3}, tmp_path / "no-model.pt")
    (tmp_path / "notes.jpg").write_text("not an image")
    (tmp_path / "a-file").write_text("")
    Image.new("L", (3000, 2000)).save(tmp_path / "large.png")  # 96 million pixels at scale 4
    cases = [
        (["-m", tmp_path / "text.pt", "-i", image], "text.pt is not a PyTorch checkpoint or it is damaged"),
        (["-m", tmp_path / "empty.pt", "-i", image], "empty.pt is not a PyTorch checkpoint or it is damaged"),
        (["-m", tmp_path / "no-model.pt", "-i", image], "no-model.pt lacks model, state_dict, preprocess"),
        (["-m", tmp_path, "-i", image], "is a folder; give the checkpoint file"),
        (["-m", tiny_model, "-i", tmp_path / "notes.jpg"], "notes.jpg is not a readable image"),
        (["-m", tiny_model, "-i", tmp_path], "is a folder, not an image; give the image files"),
        (["-m", tiny_model, "-i", image, "-o", tmp_path / "gone/m.png"], "gone does not exist; create it first"),
        (["-m", tiny_model, "-i", image, "-o", tmp_path / "a-file/m.png"], "a-file is a file, not a folder"),
        (["-m", tiny_model, "-i", image, "-s", "0"], "--scale must be in [0.01, 4] as train.scale, got 0.0"),
        (["-m", tiny_model, "-i", tmp_path / "large.png", "-s", "4"], "large.png at scale 4 is 12000x8000, more "),
        (["-m", tiny_model, "-i", image, "--recipe", tmp_path / "notes.jpg"], "notes.jpg is not a recipe that evalu"),
    ]
    for args, message in cases:
        proc = carvana("predict", *args, check=False)
        assert proc.returncode == 1 and message in proc.stderr and "Traceback" not in proc.stderr, (args, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr  # the error alone: nothing was predicted
    monkeypatch.setattr("pipeline.cli.os.access", lambda path, mode: False)  # tests run as root: chmod cannot refuse
    proc = carvana("predict", "-m", tiny_model, "-i", image, "-o", tmp_path / "m.png", check=False)
    assert proc.returncode == 1 and "is read-only; choose another -o" in proc.stderr
