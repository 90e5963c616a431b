"""Carvana RLE: row-major, 1-indexed, start/length pairs."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pipeline import rle
from pipeline.download.archive import ImageArchive


def standard_snippet(mask: np.ndarray) -> str:
    """The encoder most public Carvana kernels used (the reference the bench compares against)."""
    pixels = np.concatenate([[0], mask.flatten(), [0]])
    runs = np.where(pixels[1:] != pixels[:-1])[0] + 1
    runs[1::2] -= runs[::2]
    return " ".join(str(x) for x in runs)


def test_round_trip_of_the_demo_train_masks_against_their_gifs(tiny_demo):
    masks = ImageArchive(tiny_demo / "train_masks.zip")
    table = pd.read_csv(tiny_demo / "train_masks.csv", dtype=str, keep_default_na=False)
    for name, code in zip(table["img"], table["rle_mask"], strict=True):
        gif = np.asarray(Image.open(io.BytesIO(masks.read(name.replace(".jpg", "_mask.gif")))))
        assert set(np.unique(gif)) <= {0, 1}
        assert rle.encode(gif) == code
        assert np.array_equal(rle.decode(code, gif.shape), gif)


def test_carvana_first_row_decodes_row_major_into_the_roof():
    # the first row of Kaggle's train_masks.csv (00087a6bd4dc_01.jpg), first three runs
    mask = rle.decode("879386 40 881253 141 883140 205")
    rows, cols = np.nonzero(mask)
    assert mask.shape == (1280, 1918)
    assert set(rows) == {458, 459, 460}
    assert (rows == 458).sum() == 40 and cols[rows == 458].min() == 941
    assert (rows == 459).sum() == 141 and (rows == 460).sum() == 205  # a widening roof


@pytest.mark.parametrize(
    "pixels, expected",
    [
        ([], ""),
        ([(0, 0)], "1 1"),
        ([(2, 4)], "15 1"),  # last pixel of a 3x5 mask
        ([(0, 1)], "2 1"),  # row-major: the second pixel of the first row, not of the first column
        ([(0, 4), (1, 0)], "5 2"),  # a run continues across the row boundary
    ],
)
def test_edge_cases(pixels, expected):
    mask = np.zeros((3, 5), dtype=np.uint8)
    for r, c in pixels:
        mask[r, c] = 1
    assert rle.encode(mask) == expected
    assert np.array_equal(rle.decode(expected, (3, 5)), mask)


def test_full_mask_is_one_run():
    assert rle.encode(np.ones((1280, 1918), bool)) == f"1 {1280 * 1918}"


def test_same_output_as_the_standard_snippet_on_random_masks():
    rng = np.random.default_rng(0)
    for density in (0.001, 0.3, 0.5, 0.99):
        mask = (rng.random((64, 96)) < density).astype(np.uint8)
        assert rle.encode(mask) == standard_snippet(mask)
        assert rle.encode(mask.astype(bool)) == standard_snippet(mask)
        assert rle.encode(mask * 255) == standard_snippet(mask)


@pytest.mark.parametrize(
    "text, message",
    [
        ("1 2 3", "pairs"),
        ("1 x", "not an integer"),
        ("0 5", "1-indexed"),
        ("5 0", "below 1"),
        ("10 5 12 3", "overlap"),
        ("10 5 3 2", "unsorted"),
        ("14 3", "past the last pixel"),
    ],
)
def test_invalid_strings_are_rejected_with_the_reason(text, message):
    with pytest.raises(rle.RLEError, match=message):
        rle.validate(text, (3, 5))


def test_empty_and_missing_rle_decode_to_an_empty_mask():
    assert rle.decode("", (2, 2)).sum() == 0
    assert rle.decode(float("nan"), (2, 2)).sum() == 0
    assert rle.area("3 4 10 2") == 6 and rle.area("") == 0


def test_submission_rows_quote_names_with_commas_and_read_back(tmp_path):
    import gzip

    from pipeline.submission import encode

    names = ["plain_01.jpg", "with,comma.png", 'say "hi".png']
    path = tmp_path / "s.csv.gz"
    with gzip.open(path, "wt", newline="") as f:
        f.write(encode.HEADER + "".join(encode.row(n, "1 2") for n in names))
    assert encode.read(path) == {n: "1 2" for n in names}
    assert encode.check_file(path, names) == 3
