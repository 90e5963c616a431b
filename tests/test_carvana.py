"""Carvana's competition module: the folder checks (every inconsistency found and named), reading, the submission's
rows and the score."""

from __future__ import annotations

import io
import shutil
import zipfile

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pipeline import params
from pipeline.competitions import CompetitionError, open_competition
from pipeline.competitions.archive import ArchiveError, ImageArchive, extract_member
from pipeline.competitions.carvana import SLUG, Carvana
from pipeline.download import sources
from pipeline.masks import rle
from tests.conftest import ROOT, replace_member, upside_down


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
    assert open_competition(folder, "demo").verify() == {"train": 48, "test": 16}


def test_a_missing_mask_is_named(folder):
    victim = ImageArchive(folder / "train.zip").names()[5]
    _drop_member(folder / "train_masks.zip", lambda n: n.endswith(victim.replace(".jpg", "_mask.gif")))
    with pytest.raises(CompetitionError, match=f"not in train_masks.zip, e.g. {victim}"):
        open_competition(folder, "demo").verify()


def test_rows_missing_from_the_csvs_are_named(folder):
    table = pd.read_csv(folder / "train_masks.csv", dtype=str)
    table.iloc[1:].to_csv(folder / "train_masks.csv", index=False)
    sample = pd.read_csv(folder / "sample_submission.csv", dtype=str)
    pd.concat([sample, sample.iloc[:1]]).to_csv(folder / "sample_submission.csv", index=False)
    with pytest.raises(CompetitionError) as err:
        open_competition(folder, "demo").verify()
    assert f"not in train_masks.csv, e.g. {table['img'].iloc[0]}" in str(err.value)
    assert "lists " + sample["img"].iloc[0] + " twice" in str(err.value)


def test_a_bad_rle_in_train_masks_csv_is_named(folder):
    table = pd.read_csv(folder / "train_masks.csv", dtype=str)
    table.loc[2, "rle_mask"] = "5 3 4 1"
    table.to_csv(folder / "train_masks.csv", index=False)
    with pytest.raises(CompetitionError, match=f"row {table['img'][2]}: RLE runs are unsorted"):
        open_competition(folder, "demo").verify()


def _encoded(array, fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, fmt)
    return buf.getvalue()


def _set_row(folder, name: str, code: str) -> None:
    table = pd.read_csv(folder / "train_masks.csv", dtype=str, keep_default_na=False)
    table.loc[table["img"] == name, "rle_mask"] = code
    table.to_csv(folder / "train_masks.csv", index=False)


def test_each_mask_and_row_is_checked_against_its_own_image_s_size(folder):
    """Other data may mix sizes: an 80x48 image with its own mask and row passes and its area is its own; a row
    with runs past its own image (though inside the others'), or a mask of another size, is named; Carvana's own
    files must all be 1918x1280."""
    victim = sorted(ImageArchive(folder / "train.zip").names())[-1]  # not the first: the former check read that one
    small = np.zeros((48, 80), np.uint8)
    small[10:30, 20:60] = 1
    replace_member(folder / "train.zip", victim, _encoded(np.full((48, 80, 3), 128, np.uint8), "JPEG"))
    replace_member(folder / "train_masks.zip", victim.replace(".jpg", "_mask.gif"), _encoded(small, "GIF"))
    _set_row(folder, victim, rle.encode(small))
    comp = open_competition(folder, "demo")
    assert comp.verify() == {"train": 48, "test": 16}
    assert comp.mask_areas([victim])[0] == pytest.approx(small.mean())  # over 80x48, not the others' 160x96

    class Carvana160x96(Carvana):  # the tiny demo's size stands for Carvana's
        native_size = (96, 160)

    with pytest.raises(CompetitionError, match=rf"train.zip: 1 images are not 160x96, e.g. {victim} \(80x48\)"):
        Carvana160x96(folder, strict=True).verify()

    _set_row(folder, victim, "3800 100")  # past 80x48 = 3,840 pixels, inside 160x96
    with pytest.raises(CompetitionError, match=rf"train_masks.csv, row {victim}: RLE run .* \(its image is 80x48\)"):
        open_competition(folder, "demo").verify()

    _set_row(folder, victim, rle.encode(small))
    replace_member(
        folder / "train_masks.zip", victim.replace(".jpg", "_mask.gif"), _encoded(np.zeros((96, 160), np.uint8), "GIF")
    )
    mask = victim.replace(".jpg", "_mask.gif")
    with pytest.raises(CompetitionError, match=f"{mask} is 160x96 but its image {victim} is 80x48: a mask must"):
        open_competition(folder, "demo").verify()


def test_a_labelled_image_turned_by_its_exif_orientation_is_named(folder):
    victim = sorted(ImageArchive(folder / "train.zip").names())[-1]
    turned = upside_down(ImageArchive(folder / "train.zip").read(victim))  # its mask cannot say which way it was drawn
    replace_member(folder / "train.zip", victim, turned)
    with pytest.raises(CompetitionError, match=rf"train.zip: .*{victim} carries EXIF orientation 3: .*exif_transpose"):
        open_competition(folder, "demo").verify()


def test_carvana_counts_are_enforced_on_a_copy_that_claims_to_be_the_real_data(folder):
    with pytest.raises(CompetitionError, match="holds 48 images; Carvana has 5088"):
        Carvana(folder, strict=True).verify()


def test_truncated_zip_says_to_download_again(folder):
    data = (folder / "test.zip").read_bytes()
    (folder / "test.zip").write_bytes(data[: len(data) // 2])
    with pytest.raises(ArchiveError, match="truncated.*dvc repro download"):
        open_competition(folder, "demo").verify()


def test_unsafe_member_paths_are_refused(tmp_path):
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as z:
        z.writestr("../../outside.csv", "img,rle_mask\n")
    with pytest.raises(ArchiveError, match="unsafe path"):
        ImageArchive(evil)
    with pytest.raises(ArchiveError, match="unsafe path"):
        extract_member(evil, "outside.csv", tmp_path / "x.csv")
    assert not (tmp_path.parent.parent / "outside.csv").exists()


def test_a_local_subset_under_the_carvana_slug_says_how_to_use_it(tiny_demo, tmp_path):
    p = params.load("download", path=ROOT / "params.yaml")["download"]
    local = params.replace(p.local, path=str(tiny_demo), layout="kaggle")
    with pytest.raises(CompetitionError) as err:
        sources.fetch(params.replace(p, source="local", competition=SLUG, local=local), tmp_path / "raw", tmp_path)
    assert "Carvana has 5088" in str(err.value) and "set download.competition to another name" in str(err.value)
    assert not (tmp_path / "raw").exists()  # nothing half-imported


def test_the_score_is_the_mean_per_image_dice(tmp_path):
    shape = (4, 5)
    truth, submission = tmp_path / "truth.csv", tmp_path / "sub.csv"
    truth.write_text("img,rle_mask\na.jpg,1 4\nb.jpg,\nc.jpg,3 2\n")
    submission.write_text("img,rle_mask\na.jpg,1 2\nb.jpg,\nc.jpg,10 2\n")
    assert Carvana.score(submission, truth, shape) == pytest.approx((2 * 2 / 6 + 1.0 + 0.0) / 3)


def test_the_submission_has_one_row_per_test_image_in_the_sample_s_order(folder):
    fmt = open_competition(folder, "demo").submission()
    sample = pd.read_csv(folder / "sample_submission.csv", dtype=str)
    assert fmt.header == "img,rle_mask\n" and list(fmt.images) == sample["img"].tolist()
    assert fmt.lines(0, {0: "1 2"}) == [f"{sample['img'][0]},1 2\n"]
    quoted = Carvana.format_for(["a,b.png"])
    assert quoted.lines(0, {0: ""}) == ['"a,b.png",\n']
