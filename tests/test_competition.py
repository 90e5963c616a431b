"""The competition folder checks: every inconsistency is found and named."""

from __future__ import annotations

import shutil
import zipfile

import pandas as pd
import pytest

from pipeline.download import competition
from pipeline.download.archive import ArchiveError, ImageArchive, extract_member


@pytest.fixture
def folder(tiny_demo, tmp_path):
    dest = tmp_path / "raw"
    shutil.copytree(tiny_demo, dest)
    return dest


def _drop_member(archive, predicate):
    kept = []
    with zipfile.ZipFile(archive) as z:
        for info in z.infolist():
            if not predicate(info.filename):
                kept.append((info, z.read(info)))
    with zipfile.ZipFile(archive, "w") as z:
        for info, data in kept:
            z.writestr(info, data)


def test_a_consistent_folder_passes(folder):
    assert competition.verify(folder, hq=False, competition="demo") == {"train": 48, "test": 16}


def test_a_missing_mask_is_named(folder):
    victim = ImageArchive(folder / "train.zip").names()[5]
    _drop_member(folder / "train_masks.zip", lambda n: n.endswith(victim.replace(".jpg", "_mask.gif")))
    with pytest.raises(competition.CompetitionError, match=f"not in train_masks.zip, e.g. {victim}"):
        competition.verify(folder, hq=False, competition="demo")


def test_rows_missing_from_the_csvs_are_named(folder):
    table = pd.read_csv(folder / "train_masks.csv", dtype=str)
    table.iloc[1:].to_csv(folder / "train_masks.csv", index=False)
    sample = pd.read_csv(folder / "sample_submission.csv", dtype=str)
    pd.concat([sample, sample.iloc[:1]]).to_csv(folder / "sample_submission.csv", index=False)
    with pytest.raises(competition.CompetitionError) as err:
        competition.verify(folder, hq=False, competition="demo")
    assert f"not in train_masks.csv, e.g. {table['img'].iloc[0]}" in str(err.value)
    assert "lists " + sample["img"].iloc[0] + " twice" in str(err.value)


def test_a_bad_rle_in_train_masks_csv_is_named(folder):
    table = pd.read_csv(folder / "train_masks.csv", dtype=str)
    table.loc[2, "rle_mask"] = "5 3 4 1"
    table.to_csv(folder / "train_masks.csv", index=False)
    with pytest.raises(competition.CompetitionError, match=f"row {table['img'][2]}: RLE runs are unsorted"):
        competition.verify(folder, hq=False, competition="demo")


def test_carvana_counts_are_enforced_for_the_real_slug(folder):
    with pytest.raises(competition.CompetitionError, match="holds 48 images; Carvana has 5088"):
        competition.verify(folder, hq=False, competition=competition.CARVANA_SLUG)


def test_truncated_zip_says_to_download_again(folder):
    data = (folder / "test.zip").read_bytes()
    (folder / "test.zip").write_bytes(data[: len(data) // 2])
    with pytest.raises(ArchiveError, match="truncated.*dvc repro download"):
        competition.verify(folder, hq=False, competition="demo")


def test_unsafe_member_paths_are_refused(tmp_path):
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as z:
        z.writestr("../../outside.csv", "img,rle_mask\n")
    with pytest.raises(ArchiveError, match="unsafe path"):
        ImageArchive(evil)
    with pytest.raises(ArchiveError, match="unsafe path"):
        extract_member(evil, "outside.csv", tmp_path / "x.csv")
    assert not (tmp_path.parent.parent / "outside.csv").exists()


def test_a_subset_under_the_carvana_slug_says_how_to_use_it(tiny_demo):
    with pytest.raises(competition.CompetitionError) as err:
        competition.verify(tiny_demo, hq=False, competition=competition.CARVANA_SLUG)
    assert "Carvana has 5088" in str(err.value) and "set download.competition to another name" in str(err.value)
