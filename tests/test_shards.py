"""The predict stage's output folder: written and read back by the same module."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

from pipeline.prediction import shards
from tests.conftest import write_shards


def test_what_is_written_reads_back_in_order(tmp_path):
    manifest, written = write_shards(tmp_path)
    assert manifest["shards"] == 3 and shards.check_complete(tmp_path) == manifest
    read = [entry for k in range(3) for entry in shards.read_shard(tmp_path / shards.shard_name(k))]
    assert [(n, s) for n, s, _ in read] == [(n, s) for n, s, _ in written]
    assert all(np.array_equal(a, b) for (_, _, a), (_, _, b) in zip(read, written, strict=True))
    middle = list(shards.read_shard(tmp_path / shards.shard_name(1), 1, 2))
    assert [n for n, _, _ in middle] == ["car_03.jpg"]


def test_members_hold_every_channel_bit_for_bit_in_order(tmp_path):
    """Four channels in one member, more members than are ever compressed at once."""
    rng = np.random.default_rng(1)
    count = shards.PENDING * 3 + 1
    maps = [rng.integers(0, 256, (4, 5, 7), dtype=np.uint8) for _ in range(count)]
    shards.prepare(tmp_path, "a", count, count, 4, ["1", "2", "3", "4"], (5, 7), "multilabel")
    writer = shards.ShardWriter(tmp_path, 0)
    for i, m in enumerate(maps):
        writer.add(f"{i:04d}.jpg", m, [10, 14])
    writer.close()
    with zipfile.ZipFile(tmp_path / shards.shard_name(0)) as z:
        assert z.namelist() == [f"{i:04d}.u8.zlib" for i in range(count)] + ["index.json"]
    read = list(shards.read_shard(tmp_path / shards.shard_name(0)))
    assert [n for n, _, _ in read] == [f"{i:04d}.jpg" for i in range(count)]
    assert all(np.array_equal(a, b) for (_, _, a), b in zip(read, maps, strict=True))


def test_full_size_maps_are_bzip2_members_and_smaller_ones_deflated(tmp_path):
    """bzip2 where the disk matters (a scale-1.0 map of a megabyte or more), deflate where encode's speed does."""
    rng = np.random.default_rng(2)
    small, large = rng.integers(0, 256, (1, 160, 240), np.uint8), rng.integers(0, 4, (1, 1000, 1000), np.uint8)
    shards.prepare(tmp_path, "a", 2, 2, 1, ["car"], (160, 240))
    writer = shards.ShardWriter(tmp_path, 0)
    writer.add("small.jpg", small, [1280, 1918])
    writer.add("large.jpg", large, [1000, 1000])
    writer.close()
    with zipfile.ZipFile(tmp_path / shards.shard_name(0)) as z:
        assert z.read("small.u8.zlib")[:1] == b"\x78"  # a zlib stream's header
        assert z.read("large.u8.bz2")[:3] == b"BZh"
    read = {n: p for n, _, p in shards.read_shard(tmp_path / shards.shard_name(0))}
    assert np.array_equal(read["small.jpg"], small) and np.array_equal(read["large.jpg"], large)


def test_the_same_maps_make_the_same_shard_whenever_written(tmp_path, monkeypatch):
    """No clock in the bytes: a resumed or repeated run writes the shard it wrote before (DVC sees no change)."""
    maps = [np.random.default_rng(k).integers(0, 256, (1, 6, 8), np.uint8) for k in range(3)]

    def shard(folder: Path) -> bytes:
        shards.prepare(folder, "a", 3, 3, 1, ["car"], (6, 8))
        writer = shards.ShardWriter(folder, 0)
        for k, m in enumerate(maps):
            writer.add(f"car_{k:02d}.jpg", m, [12, 16])
        writer.close()
        return (folder / shards.shard_name(0)).read_bytes()

    first = shard(tmp_path / "a")
    monkeypatch.setattr(zipfile.time, "time", lambda: 1_900_000_000.0)  # another day, as a later run would see
    assert shard(tmp_path / "b") == first


def test_an_unfinished_shard_is_invisible_and_named_as_missing(tmp_path):
    shards.prepare(tmp_path, "a", 4, 2, 1, ["background", "car"], (6, 8))
    writer = shards.ShardWriter(tmp_path, 0)
    writer.add("car_00.jpg", np.zeros((1, 6, 8), np.uint8), [12, 16])
    assert not (tmp_path / shards.shard_name(0)).exists()
    with pytest.raises(
        shards.PredictionError, match=r"lacks 2 of 2 shards \(e.g. shard-00000.zip\).*dvc repro predict"
    ):
        shards.check_complete(tmp_path)
    writer.discard()
    assert not list(tmp_path.glob("*.part"))


def test_another_fingerprint_deletes_every_old_shard_first(tmp_path):
    write_shards(tmp_path, fingerprint="a")
    (tmp_path / "shard-00009.zip.part").write_bytes(b"left by a killed run")
    assert shards.prepare(tmp_path, "a", 5, 2, 1, ["background", "car"], (6, 8))["fingerprint"] == "a"
    assert len(list(tmp_path.glob("shard-*.zip"))) == 3  # same fingerprint: kept
    shards.prepare(tmp_path, "b", 5, 2, 1, ["background", "car"], (6, 8))
    assert not list(tmp_path.glob("shard-*"))


def test_publish_links_the_finished_shards_into_the_out(tmp_path):
    work, out = tmp_path / "work", tmp_path / "out"
    write_shards(work)
    (out / "stale").mkdir(parents=True)
    shards.publish(work, out)
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in work.iterdir())
    assert os.path.samefile(out / shards.shard_name(0), work / shards.shard_name(0))  # no second copy


def test_a_folder_without_a_manifest_says_which_stage_makes_it(tmp_path):
    with pytest.raises(shards.PredictionError, match="has no manifest.json; run `dvc repro predict`"):
        shards.check_manifest(tmp_path)
