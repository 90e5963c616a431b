"""Pseudo-labels: the most confident test predictions of another experiment, labelled as encode would label them,
join the training images; a changed source retrains."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from pipeline.competitions.carvana import SLUG
from pipeline.data.datasets import TrainDataset
from pipeline.data.preprocess import Preprocess
from pipeline.masks import postprocess, recipe
from pipeline.masks.postprocess import Rule
from pipeline.prediction import pseudo, shards
from tests.conftest import copy_project, open_carvana, repaint, run, stages_run


def _source(folder, comp, levels, names=None, test_set=None):
    """A fetched source: data/predictions of the test images (image i: a car drawn at certainty levels[i]) and its
    predictor.json (threshold 0.4). By default its names and test set are comp's, as predict records them."""
    names = comp.test_names if names is None else names
    out = folder / "data/predictions"
    test_set = test_set or {"competition": SLUG, "content": comp.test.content(names)}
    manifest = shards.prepare(out, "src", len(names), 8, 1, ["background", "car"], (24, 40), None, test_set)
    for k in range(manifest["shards"]):
        writer = shards.ShardWriter(out, k)
        for i in range(k * 8, min(k * 8 + 8, len(names))):
            probs = np.full((1, 24, 40), 255 - levels[i], np.uint8)
            probs[0, 6:18, 10:30] = levels[i]  # the "car"
            writer.add(names[i], probs, [96, 160])
        writer.close()
    recipe.write(folder / "reports/evaluate/predictor.json", [], [Rule(0.4)], True, True)
    return folder


def test_the_most_confident_test_images_are_labelled_as_encode_would_label_them(tiny_demo, tmp_path):
    comp = open_carvana(tiny_demo)
    levels = [130 + 8 * i for i in range(16)]  # image 15 the surest
    labels = pseudo.PseudoLabels.choose(comp, SLUG, _source(tmp_path / "src", comp, levels), 0.25, "src (abc1234)")
    assert labels.names == comp.test_names[15:11:-1] and labels.rules == [Rule(0.4)]
    maps = shards.Maps(tmp_path / "src/data/predictions")
    for name in labels.names:
        original, probs = maps.read(name)
        expected = Rule(0.4).apply(postprocess.car_probability(probs), original)  # what encode submits
        assert np.array_equal(labels.read_mask(name, expected=original), expected.astype(np.uint8))
    assert labels.read_image(labels.names[0]) == comp.test.read(labels.names[0])
    record = labels.record({"name": "src", "rev": "abc"})
    assert [r["img"] for r in record["images"]] == labels.names and record["rules"][0]["threshold"] == 0.4

    pre = Preprocess.for_data((96, 160), 0.5, 3)
    train = TrainDataset(comp, comp.train_names[:10], pre, extra=labels)
    assert len(train) == 14
    image, mask = train[13]  # the last pseudo-labelled image
    assert image.shape == (3, 48, 80) and mask.shape == (48, 80) and 0 < mask.float().mean() < 1


def _refusal(comp, folder, competition=SLUG) -> str:
    with pytest.raises(pseudo.PseudoLabelError) as e:
        pseudo.PseudoLabels.choose(comp, competition, folder, 0.25, "src (abc1234)")
    message = str(e.value)
    assert (
        message.startswith("train.pseudo_labels.source: src (abc1234)") and "delete" not in message
    )  # the download is good
    return message


def test_a_source_of_another_test_set_competition_or_no_test_images_is_refused_without_blaming_the_download(
    tiny_demo, tmp_path
):
    comp, levels = open_carvana(tiny_demo), [150] * 16
    good = _source(tmp_path / "good", comp, levels)
    assert "predicted the test set of 'carvana-image-masking-challenge', not of this project's download.competition " \
        "'severstal-steel-defect-detection'" in _refusal(comp, good, "severstal-steel-defect-detection")  # fmt: skip

    others = [n.replace("_", "x_", 1) for n in comp.test_names]  # predicted on another download of Carvana
    message = _refusal(comp, _source(tmp_path / "others", comp, levels, names=others))
    assert f"16 of its 16 images are not in this test set (e.g. {sorted(others)[0]})" in message
    assert f"16 of this test set's 16 are not among them (e.g. {sorted(comp.test_names)[0]})" in message

    raw = tmp_path / "raw"  # this project's test images changed after the source predicted them
    shutil.copytree(tiny_demo, raw)
    repaint(raw / "test.zip", comp.test_names[:1])
    assert "the same 16 test image names with other pixels" in _refusal(open_carvana(raw), good)

    empty = tmp_path / "empty/data/predictions"
    shards.prepare(empty, "src", 0, 8, 1, ["background", "car"], (24, 40), None, {"competition": SLUG, "content": ""})
    assert "predicted no test images, so there is nothing to pseudo-label" in _refusal(comp, tmp_path / "empty")

    manifest = json.loads((good / "data/predictions/manifest.json").read_text())
    parts = {**manifest, "class_names": ["background", "body", "windows"], "labels": "multiclass"}
    (good / "data/predictions/manifest.json").write_text(json.dumps(parts))  # the multi-class demo's source
    assert "predicted the classes ['background', 'body', 'windows'] (multiclass), this project's are " \
        "['background', 'car'] (binary)" in _refusal(comp, good)  # fmt: skip

    old = dict(manifest)
    del old["test_set"]  # made before predict recorded its test set
    (good / "data/predictions/manifest.json").write_text(json.dumps(old))
    assert "do not record which test set they are of" in _refusal(comp, good)


@pytest.mark.slow
def test_a_pseudo_label_round_under_dvc_and_a_changed_source_retrains(tiny_project, tmp_path):
    project = copy_project(tiny_project, tmp_path / "p")
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-qm", "results"], project)
    run(["git", "branch", "src"], project)  # the source: this commit's test predictions
    run(["dvc", "exp", "run", "-n", "other", "-S", "predict.tta=false", "predict"], project)  # other predictions
    refs = run(["git", "for-each-ref", "--format=%(objectname) %(refname)", "refs/exps"], project).stdout.split("\n")
    other = next(line.split()[0] for line in refs if line.endswith("/other"))

    out = run(["dvc", "exp", "run", "-n", "round", "-S", "train.pseudo_labels.source=src", "train"], project).stdout
    assert "train" in stages_run(out) and "pseudo-labels: 8 test images of src" in out, out
    record = json.loads((project / "models/pseudo_labels.json").read_text())
    first = run(["git", "rev-parse", "src"], project).stdout.strip()
    assert record["source"]["rev"] == first and len(record["images"]) == 8
    assert stages_run(run(["dvc", "repro", "train"], project).stdout) == ["inputs"]

    run(["git", "branch", "-f", "src", other], project)  # the source experiment changed
    out = run(["dvc", "repro", "train"], project).stdout
    assert stages_run(out) == ["inputs", "train"] and "the files read by train changed" in out, out
    assert json.loads((project / "models/pseudo_labels.json").read_text())["source"]["rev"] == other
