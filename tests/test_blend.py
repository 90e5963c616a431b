"""Blends of experiments: the weights chosen on out-of-fold maps, the same arithmetic in evaluate and predict, and
members found by name in git."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from pipeline import members
from pipeline.evaluation import blend as choosing
from pipeline.masks import postprocess
from pipeline.prediction import blend, shards
from tests.conftest import open_carvana, repaint, replace_member, run, write_shards


@pytest.mark.parametrize("count", [2, 3, 4, 5, 7])
def test_the_weight_grid_sums_to_one_and_holds_every_member_alone(count):
    grid = choosing.weight_grid(count)
    assert len(grid) <= choosing.MAX_POINTS and len(set(grid)) == len(grid)
    assert all(abs(sum(w) - 1) < 1e-9 and min(w) >= 0 for w in grid)
    for i in range(count):
        assert tuple(float(j == i) for j in range(count)) in grid
    if count == 2:
        assert len(grid) == 11  # steps of 0.1


def test_combine_is_the_member_alone_or_the_weighted_mean_at_the_largest_size():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (1, 6, 8), dtype=np.uint8)
    b = rng.integers(0, 256, (1, 12, 16), dtype=np.uint8)
    size = blend.common_size([a.shape[1:], b.shape[1:]])
    assert size == (12, 16)
    assert np.array_equal(blend.combine([b, a], [1.0, 0.0], size), b)
    mixed = blend.combine([a, b], [0.3, 0.7], size)
    expected = np.float32(0.3) * postprocess.upsample(a[0], size) + np.float32(0.7) * b[0].astype(np.float32)
    assert mixed.dtype == np.uint8 and np.array_equal(mixed[0], np.clip(np.rint(expected), 0, 255).astype(np.uint8))


def _oof(folder, comp, names, noise_where, seed, recorded=True):
    """Out-of-fold maps at a quarter of the size: the truth, blurred, with heavy noise where `noise_where`; of the
    training data `comp` holds now, as evaluate records it (`recorded` False: as a version that did not)."""
    rng = np.random.default_rng(seed)
    train_set = comp.content(sorted(names)) if recorded else None
    manifest = shards.prepare(folder, "oof", len(names), 20, 1, ["background", "car"], (24, 40), train_set=train_set)
    writer, written = None, 0
    for name in names:
        truth = comp.read_mask(name)
        small = np.asarray(truth[::4, ::4], np.float32)[:24, :40] * 200 + 28
        noise = rng.normal(0, 120, small.shape) * noise_where(small.shape)
        probs = np.clip(np.rint(small + noise), 0, 255).astype(np.uint8)[None]
        writer = writer or shards.ShardWriter(folder, written // manifest["shard_size"])
        writer.add(name, probs, list(truth.shape))
        written += 1
        if written % manifest["shard_size"] == 0 or written == len(names):
            writer.close()
            writer = None
    return folder


def test_a_blend_of_members_that_err_apart_beats_both_and_never_falls_below_the_best(tiny_demo, tmp_path):
    comp = open_carvana(tiny_demo)
    names = comp.train_names
    left = _oof(tmp_path / "left", comp, names, lambda s: np.arange(s[1])[None, :] < s[1] // 2, 1)  # noisy on the left
    right = _oof(tmp_path / "right", comp, names, lambda s: np.arange(s[1])[None, :] >= s[1] // 2, 2)
    chosen = choosing.choose(comp, names, [("left", left), ("right", right)], tmp_path / "oof", 0.2, 0.8)
    assert chosen.dice > max(chosen.member_dice) + 0.01, (chosen.dice, chosen.member_dice)
    assert 0 < chosen.weights[0] < 1 and abs(sum(chosen.weights) - 1) < 1e-9
    written, sources = shards.Maps(tmp_path / "oof"), [shards.Maps(left), shards.Maps(right)]
    for name in names[:5]:  # the blend's maps, kept for a blend of blends: the arithmetic predict uses
        probs = blend.combine([m.read(name)[1] for m in sources], chosen.weights, (24, 40))
        assert np.array_equal(written.read(name)[1], probs)

    noise = _oof(tmp_path / "noise", comp, names, lambda s: np.ones(s), 3)  # a member that only hurts
    chosen = choosing.choose(comp, names, [("left", left), ("noise", noise)], tmp_path / "oof2", 0.2, 0.8)
    assert chosen.dice >= max(chosen.member_dice) and chosen.dice == pytest.approx(chosen.board.dice(0.5), abs=0.05)


def test_a_member_without_every_out_of_fold_image_is_named(tiny_demo, tmp_path):
    comp = open_carvana(tiny_demo)
    names = comp.train_names
    whole = _oof(tmp_path / "whole", comp, names, lambda s: np.zeros(s), 1)
    part = _oof(tmp_path / "part", comp, names[:16], lambda s: np.zeros(s), 1)  # trained with split.fold=0
    with pytest.raises(choosing.BlendError, match=r"part's out-of-fold maps cover 16 of the 48 .* split.fold=all"):
        choosing.choose(comp, names, [("whole", whole), ("part", part)], tmp_path / "oof", 0.2, 0.8)


def test_a_member_of_other_pixels_or_labels_under_the_same_names_is_named(tiny_demo, tmp_path):
    raw = tmp_path / "raw"
    shutil.copytree(tiny_demo, raw)
    comp = open_carvana(raw)
    names = comp.train_names
    before = _oof(tmp_path / "before", comp, names, lambda s: np.zeros(s), 1)
    unrecorded = _oof(tmp_path / "unrecorded", comp, names, lambda s: np.zeros(s), 1, recorded=False)
    with pytest.raises(choosing.BlendError, match=r"unrecorded's out-of-fold maps do not record .* run unrecorded"):
        choosing.choose(comp, names, [("before", before), ("unrecorded", unrecorded)], tmp_path / "oof", 0.2, 0.8)

    repaint(raw / "train.zip", [names[0]])  # other pixels under the first image's name
    comp = open_carvana(raw)
    after = _oof(tmp_path / "after", comp, names, lambda s: np.zeros(s), 1)
    with pytest.raises(choosing.BlendError, match=r"before's .* same 48 training image names with other pixels or lab"):
        choosing.choose(comp, names, [("after", after), ("before", before)], tmp_path / "oof", 0.2, 0.8)

    header, *lines = (raw / "train_masks.csv").read_text().splitlines()  # its label corrected since `after` ran
    rle = dict(line.split(",", 1) for line in lines)
    rle[names[0]] = rle[names[1]]
    (raw / "train_masks.csv").write_text("\n".join([header, *(f"{n},{r}" for n, r in rle.items())]) + "\n")
    with zipfile.ZipFile(raw / "train_masks.zip") as z:
        second = z.read(f"train_masks/{Path(names[1]).stem}_mask.gif")
    replace_member(raw / "train_masks.zip", f"/{Path(names[0]).stem}_mask.gif", second)
    comp = open_carvana(raw)
    again = _oof(tmp_path / "again", comp, names, lambda s: np.zeros(s), 1)
    with pytest.raises(choosing.BlendError, match=r"after's .* other pixels or labels \(the data changed since it ran"):
        choosing.choose(comp, names, [("again", again), ("after", after)], tmp_path / "oof", 0.2, 0.8)


def test_blended_test_shards_are_the_weighted_means_and_resume(tmp_path):
    names = [f"car_{i:02d}.jpg" for i in range(5)]
    write_shards(tmp_path / "a", "a", names=names, seed=1)
    write_shards(tmp_path / "b", "b", names=names, seed=2, size=(3, 4))
    folders, out = [tmp_path / "a", tmp_path / "b"], tmp_path / "out"
    assert blend.blend_shards(folders, [0.6, 0.4], out, 2) == 3
    a, b, got = shards.Maps(folders[0]), shards.Maps(folders[1]), shards.Maps(out)
    for name in names:
        assert np.array_equal(got.read(name)[1], blend.combine([a.read(name)[1], b.read(name)[1]], [0.6, 0.4], (6, 8)))
    before = (out / "shard-00001.zip").read_bytes()
    (out / "shard-00001.zip").unlink()
    assert blend.blend_shards(folders, [0.6, 0.4], out, 2) == 1  # the one missing shard
    assert (out / "shard-00001.zip").read_bytes() == before
    assert blend.blend_shards(folders, [0.5, 0.5], out, 2) == 3  # other weights: every shard again


def test_members_are_found_by_name_and_one_without_out_of_fold_maps_is_named(tmp_path):
    for cmd in (["git", "init", "-q"], ["git", "config", "user.email", "t@e.com"], ["git", "config", "user.name", "t"]):
        run(cmd, tmp_path)
    lock = "schema: '2.0'\nstages:\n  train:\n    outs:\n    - path: models\n      md5: 1.dir\n"
    (tmp_path / "dvc.lock").write_text(lock)
    run(["git", "add", "-A"], tmp_path)
    run(["git", "commit", "-qm", "trained"], tmp_path)
    run(["git", "tag", "old"], tmp_path)
    with pytest.raises(members.MemberError, match=r"old \(\w{7}\) has no data/oof in its dvc.lock.*split.fold=all"):
        members.resolve(["old", "old"], tmp_path)
    (tmp_path / "dvc.lock").write_text(lock + "  evaluate:\n    outs:\n    - path: data/oof\n      md5: 2.dir\n")
    run(["git", "commit", "-qam", "evaluated"], tmp_path)
    found = members.resolve(["HEAD"], tmp_path)
    assert [m["models"] for m in found] == ["1.dir"] and found[0]["data/oof"] == "2.dir"
    run(["git", "tag", "evaluated"], tmp_path)
    (tmp_path / "dvc.lock").write_text(
        lock.replace("1.dir", "3.dir") + "  evaluate:\n    outs:\n    - path: data/oof\n      md5: 4.dir\n"
    )
    run(["git", "commit", "-qam", "again"], tmp_path)
    found = members.resolve(["HEAD", "refs/tags/evaluated"], tmp_path)  # a full git ref is a revision like any other
    assert [m["models"] for m in found] == ["3.dir", "1.dir"]
    with pytest.raises(members.MemberError, match=r"HEAD and HEAD~0 are the same commit \(\w{7}\); name each"):
        members.resolve(["HEAD", "HEAD~0"], tmp_path)
    with pytest.raises(members.MemberError, match=r"no experiment or git revision is named 'refs/heads/nope'"):
        members.resolve(["refs/heads/nope"], tmp_path)
    with pytest.raises(members.MemberError, match=r"no experiment or git revision is named 'nope'"):
        members.resolve(["HEAD", "nope"], tmp_path)


def test_the_proxy_keeps_only_sums_and_scores_as_the_scoreboard_chooses(tiny_demo, tmp_path):
    comp = open_carvana(tiny_demo)
    rng = np.random.default_rng(4)
    summed, board = choosing._CurveSum(comp), comp.scoreboard()
    for name in comp.train_names[:12]:
        truth = comp.read_mask(name)[::4, ::4]
        q = np.clip(truth * 200 + rng.normal(40, 60, truth.shape), 0, 255).astype(np.uint8)[None]
        summed.add(name, q, truth)
        board.add_levels(name, q, truth)
    assert summed.board.names == [] and summed.board.curves == [] and summed.count == 12
    assert summed.score(0.2, 0.8) == pytest.approx(board.choose(0.2, 0.8)[1]["dice"], abs=1e-12)
