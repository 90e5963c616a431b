"""Datasets beyond Kaggle's layout, imported into the competition folder: real ISBI slices and
synthetic MindSpore, TIFF-stack and colour-mask datasets."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pipeline import params
from pipeline.competitions import open_competition
from pipeline.competitions.archive import ImageArchive
from pipeline.competitions.base import read_csv
from pipeline.competitions.carvana import Carvana
from pipeline.download import layouts
from pipeline.masks import rle
from pipeline.params import LocalParams
from tests.conftest import ISBI, upside_down

BASE = LocalParams(
    path="",
    layout="folder-pairs",
    images="imgs",
    masks="masks",
    test_images="",
    mask_suffix="_mask",
    mask_values="binary",
    colors={},
)


def _folders(tmp_path, *names: str):
    """tmp_path/src with these empty sub-folders."""
    src = tmp_path / "src"
    for name in names:
        (src / name).mkdir(parents=True)
    return src


def _isbi(**changes) -> LocalParams:
    return params.replace(
        BASE,
        path=str(ISBI),
        images="train/image",
        masks="train/label",
        test_images="test/image",
        mask_suffix="",
        **changes,
    )


@pytest.mark.skipif(not ISBI.is_dir(), reason="the shared ISBI slices are not beside this checkout")
def test_isbi_slices_import_as_folder_pairs(tmp_path):
    layouts.import_folder(_isbi(), tmp_path, Carvana)
    assert open_competition(tmp_path, "isbi").verify() == {"train": 30, "test": 30}
    masks = ImageArchive(tmp_path / "train_masks.zip")
    label = np.asarray(Image.open(ISBI / "train/label/7.png"))
    imported = np.asarray(Image.open(io.BytesIO(masks.read("7_mask.png"))))
    assert np.array_equal(imported, (label == 255).astype(np.uint8))  # 255 (cell interior) -> class 1
    table = pd.read_csv(tmp_path / "train_masks.csv", dtype=str)
    assert rle.area(table.set_index("img").loc["7.png", "rle_mask"]) == int((label == 255).sum())
    image = ImageArchive(tmp_path / "train.zip").read("7.png")
    assert image == (ISBI / "train/image/7.png").read_bytes()  # kept, not recompressed
    assert not (tmp_path / "classes.json").exists()


def _mindspore(root, colours=False):
    rng = np.random.default_rng(0)
    for split_dir, ids in (("train", range(3)), ("val", range(3, 5))):
        for i in ids:
            folder = root / split_dir / f"{i:04d}"
            folder.mkdir(parents=True)
            Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(folder / "image.png")
            index = np.zeros((24, 32), np.uint8)
            index[4:12, 4:20], index[14:20, 10:30] = 1, 2
            mask = np.array([[0, 0, 0], [128, 0, 0], [0, 128, 0]], np.uint8)[index] if colours else index
            Image.fromarray(mask).save(folder / "mask.png")


def test_mindspore_layout_with_index_masks_is_multiclass(tmp_path):
    _mindspore(tmp_path / "src")
    layouts.import_folder(
        params.replace(BASE, path=str(tmp_path / "src"), layout="mindspore", mask_values="index"),
        tmp_path / "raw",
        Carvana,
    )
    assert open_competition(tmp_path / "raw", "cells").verify()["train"] == 5
    assert open_competition(tmp_path / "raw", "cells").class_names == ["background", "class_1", "class_2"]


def test_colour_masks_are_mapped_and_an_unmapped_colour_is_named(tmp_path):
    _mindspore(tmp_path / "src", colours=True)
    local = params.replace(
        BASE,
        path=str(tmp_path / "src"),
        layout="mindspore",
        mask_values="colors",
        colors={1: [128, 0, 0], 2: [0, 128, 0]},
    )
    layouts.import_folder(local, tmp_path / "raw", Carvana)
    mask = np.asarray(Image.open(io.BytesIO(ImageArchive(tmp_path / "raw/train_masks.zip").read("0000_mask.png"))))
    assert set(np.unique(mask)) == {0, 1, 2}
    with pytest.raises(layouts.LayoutError, match=r"colour \[0, 128, 0\] is not in download.local.colors"):
        layouts.import_folder(params.replace(local, colors={1: [128, 0, 0]}), tmp_path / "raw2", Carvana)
    with pytest.raises(layouts.LayoutError, match="RGB mask; set download.local.mask_values to colors"):
        layouts.import_folder(params.replace(local, mask_values="binary"), tmp_path / "raw3", Carvana)


def _stack(path, pages):
    pages[0].save(path, save_all=True, append_images=pages[1:])


def test_tiff_stacks_of_16_bit_slices_keep_every_value(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    rng = np.random.default_rng(1)
    _stack(
        src / "train-volume.tif", [Image.fromarray(rng.integers(0, 65535, (20, 28), dtype=np.uint16)) for _ in range(4)]
    )
    _stack(
        src / "train-labels.tif",
        [Image.fromarray((rng.random((20, 28)) > 0.5).astype(np.uint8) * 255) for _ in range(4)],
    )
    _stack(
        src / "test-volume.tif", [Image.fromarray(rng.integers(0, 65535, (20, 28), dtype=np.uint16)) for _ in range(2)]
    )
    local = params.replace(
        BASE,
        path=str(src),
        layout="tiff-stack",
        images="train-volume.tif",
        masks="train-labels.tif",
        test_images="test-volume.tif",
    )
    layouts.import_folder(local, tmp_path / "raw", Carvana)
    assert open_competition(tmp_path / "raw", "em").verify() == {"train": 4, "test": 2}
    page = Image.open(io.BytesIO(ImageArchive(tmp_path / "raw/train.zip").read("train-volume_002.png")))
    assert page.mode in ("I;16", "I") and np.asarray(page).max() > 255  # 16 bits survive
    big_endian = rng.integers(256, 4096, (20, 28)).astype(">u2")  # ImageJ's TIFFs; Pillow's own convert clips at 255
    wide = [big_endian, big_endian.astype(np.int32), np.full((20, 28), 70000, np.int32), np.full((20, 28), 0.5, "f4")]
    for k, values in enumerate(wide):
        _stack(src / f"wide-{k}.tif", [Image.fromarray(values)] * 4)
    for k in (0, 1):  # 16-bit big-endian and 32-bit integer pages: every value kept, as 16-bit PNGs
        layouts.import_folder(params.replace(local, images=f"wide-{k}.tif"), tmp_path / f"wide{k}", Carvana)
        page = Image.open(io.BytesIO(ImageArchive(tmp_path / f"wide{k}/train.zip").read(f"wide-{k}_000.png")))
        assert page.mode == "I;16" and np.array_equal(np.asarray(page), big_endian)
    with pytest.raises(layouts.LayoutError, match=r"wide-2.tif page 0 holds values from 70000 .* past 16 bits"):
        layouts.import_folder(params.replace(local, images="wide-2.tif"), tmp_path / "wide2", Carvana)
    with pytest.raises(layouts.LayoutError, match=r"wide-3.tif page 0 is a floating-point image.*8- or 16-bit"):
        layouts.import_folder(params.replace(local, images="wide-3.tif"), tmp_path / "wide3", Carvana)
    _stack(src / "short-labels.tif", [Image.fromarray(np.zeros((20, 28), np.uint8))] * 3)
    with pytest.raises(layouts.LayoutError, match="has 4 pages but .*short-labels.tif has 3"):
        layouts.import_folder(params.replace(local, masks="short-labels.tif"), tmp_path / "raw2", Carvana)


def test_missing_masks_and_bad_values_are_named(tmp_path):
    src = _folders(tmp_path, "imgs", "masks")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(src / "imgs/a.jpg")
    local = params.replace(BASE, path=str(src))
    with pytest.raises(layouts.LayoutError, match="masks holds no images"):
        layouts.import_folder(local, tmp_path / "raw", Carvana)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(src / "masks/b_mask.png")
    with pytest.raises(layouts.LayoutError, match="a.jpg has no mask a_mask.* in"):
        layouts.import_folder(local, tmp_path / "raw", Carvana)
    Image.fromarray(np.array([[0, 3], [255, 0]], np.uint8).repeat(4, 0).repeat(4, 1)).save(src / "masks/a_mask.png")
    with pytest.raises(layouts.LayoutError, match=r"masks: 1 mask\(s\) have no image in .*imgs, e.g. b_mask.png"):
        layouts.import_folder(local, tmp_path / "raw", Carvana)  # b's image renamed or lost
    (src / "masks/b_mask.png").unlink()
    with pytest.raises(layouts.LayoutError, match=r"holds values \[0, 3, 255\]: not a 0/1 or 0/255 mask"):
        layouts.import_folder(local, tmp_path / "raw", Carvana)


def test_jpeg_masks_are_cut_at_128_and_said_so_and_refused_where_noise_hides_the_label(tmp_path, capsys):
    src = _folders(tmp_path, "imgs", "masks")
    truth = np.zeros((40, 60), np.uint8)
    truth[10:30, 15:45] = 1
    for name in ("a", "b"):
        Image.fromarray(np.full((40, 60, 3), 90, np.uint8)).save(src / "imgs" / f"{name}.png")
        Image.fromarray(truth * 255).convert("RGB").save(src / "masks" / f"{name}_mask.jpg", quality=75)
    local = params.replace(BASE, path=str(src))
    layouts.import_folder(local, tmp_path / "raw", Carvana)  # Kvasir-SEG's kind: 0/255 through JPEG's noise
    assert "2 of the 2 masks are JPEGs (lossy): each read as 0/255 with a cut at 128" in capsys.readouterr().out
    assert np.array_equal(open_competition(tmp_path / "raw", "polyps").read_mask("a.png"), truth)
    with pytest.raises(layouts.LayoutError, match=r"a_mask.jpg is a JPEG, .* its class ids cannot be read exactly"):
        layouts.import_folder(params.replace(local, mask_values="index"), tmp_path / "raw2", Carvana)
    Image.fromarray(truth).save(src / "masks/b_mask.jpg")  # a 0/1 mask: 1 is within the compression's noise
    with pytest.raises(layouts.LayoutError, match=r"b_mask.jpg is a JPEG mask of values up to \d: a 0/1 mask"):
        layouts.import_folder(local, tmp_path / "raw3", Carvana)


def test_a_labelled_photo_turned_by_its_exif_orientation_is_refused_rather_than_guessed(tmp_path):
    src = _folders(tmp_path, "imgs", "masks", "test")
    photo = Image.fromarray(np.random.default_rng(0).integers(0, 255, (16, 24, 3), dtype=np.uint8))
    (src / "imgs/a.jpg").write_bytes(upside_down(photo))  # the same size either way
    (src / "test/t.jpg").write_bytes(
        upside_down(photo)
    )  # no label to disagree with: kept as stored, as Kaggle scores it
    Image.fromarray(np.eye(16, 24, dtype=np.uint8)).save(src / "masks/a_mask.png")
    local = params.replace(BASE, path=str(src), test_images="test")
    with pytest.raises(layouts.LayoutError, match=r"a.jpg carries EXIF orientation 3: .*exif_transpose"):
        layouts.import_folder(local, tmp_path / "raw", Carvana)
    photo.save(src / "imgs/a.jpg")  # stored as shown
    layouts.import_folder(local, tmp_path / "raw", Carvana)
    assert open_competition(tmp_path / "raw", "photos").verify() == {"train": 1, "test": 1}


def test_two_files_of_one_name_are_refused_rather_than_paired_by_guess(tmp_path):
    src = _folders(tmp_path, "imgs", "masks")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(src / "imgs/a.jpg")
    Image.fromarray(np.eye(8, dtype=np.uint8)).save(src / "masks/a_mask.png")
    Image.fromarray(np.ones((8, 8), np.uint8)).save(src / "masks/a_mask.gif")  # another label of a
    local = params.replace(BASE, path=str(src))
    with pytest.raises(layouts.LayoutError, match=r"a_mask.gif and a_mask.png share the name 'a_mask': which one"):
        layouts.import_folder(local, tmp_path / "raw", Carvana)
    (src / "masks/a_mask.gif").unlink()
    Image.fromarray(np.ones((8, 8, 3), np.uint8)).save(src / "imgs/a.png")  # another image that would take a's mask
    with pytest.raises(layouts.LayoutError, match=r"a.jpg and a.png share the name 'a': both would take the same"):
        layouts.import_folder(local, tmp_path / "raw", Carvana)


def test_names_with_commas_and_quotes_are_quoted_in_the_csv_files(tmp_path):
    src = _folders(tmp_path, "imgs", "masks", "test")
    for name in ("car,one", 'the "best" car'):
        Image.fromarray(np.full((8, 8, 3), 90, np.uint8)).save(src / "imgs" / f"{name}.png")
        Image.fromarray(np.eye(8, dtype=np.uint8)).save(src / "masks" / f"{name}_mask.png")
        Image.fromarray(np.full((8, 8, 3), 90, np.uint8)).save(src / "test" / f"{name}.png")
    layouts.import_folder(params.replace(BASE, path=str(src), test_images="test"), tmp_path / "raw", Carvana)
    assert open_competition(tmp_path / "raw", "commas").verify() == {"train": 2, "test": 2}
    sample = read_csv(tmp_path / "raw/sample_submission.csv", ("img", "rle_mask"))
    assert sorted(sample["img"]) == ["car,one.png", 'the "best" car.png']


def test_an_image_too_large_to_decode_safely_is_named(tmp_path, monkeypatch):
    src = _folders(tmp_path, "imgs", "masks")
    Image.fromarray(np.zeros((60, 80, 3), np.uint8)).save(src / "imgs/a.png")
    Image.fromarray(np.zeros((60, 80), np.uint8)).save(src / "masks/a_mask.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2_000)  # Pillow refuses twice its limit: 4,800 pixels do here
    with pytest.raises(layouts.LayoutError, match=r"a.png is too large to decode safely .*cut it into tiles"):
        layouts.import_folder(params.replace(BASE, path=str(src)), tmp_path / "raw", Carvana)
    stack = tmp_path / "stack.tif"
    Image.fromarray(np.zeros((60, 80), np.uint8)).save(stack)
    stacks = params.replace(BASE, path=str(tmp_path), layout="tiff-stack", images="stack.tif", masks="stack.tif")
    with pytest.raises(layouts.LayoutError, match=r"stack.tif is too large to decode safely"):
        layouts.import_folder(stacks, tmp_path / "raw", Carvana)


def test_index_masks_with_mostly_unused_ids_are_refused(tmp_path):
    src = _folders(tmp_path, "imgs", "masks")
    voc = np.array([[0, 1], [255, 2]], np.uint8).repeat(4, 0).repeat(4, 1)  # a 255 'void' border, as VOC's
    for name, mask in (("a", voc), ("b", np.minimum(voc, 1))):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(src / f"imgs/{name}.jpg")
        Image.fromarray(mask).save(src / f"masks/{name}_mask.png")
    local = params.replace(BASE, path=str(src), mask_values="index")
    with pytest.raises(layouts.LayoutError, match=r"a_mask.png: the masks hold class ids 0, 1, 2, 255, so 256 class"):
        layouts.import_folder(local, tmp_path / "raw", Carvana)
    assert not (tmp_path / "raw" / "train.zip").exists()
    Image.fromarray(np.where(voc == 255, 0, voc)).save(src / "masks/a_mask.png")
    layouts.import_folder(local, tmp_path / "raw", Carvana)  # 0, 1, 2: three classes
    assert open_competition(tmp_path / "raw", "voc").class_names == ["background", "class_1", "class_2"]
