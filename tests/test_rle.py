"""Run-length encoding: Carvana's row-major runs, and the five competitions' dialects against each competition's own
published reference code (re-implemented here, each with its source)."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pipeline.competitions.archive import ImageArchive
from pipeline.masks import rle
from pipeline.masks.rle import DIALECTS

CARVANA = (1280, 1918)


def standard_snippet(mask: np.ndarray) -> str:
    """The encoder most public Carvana kernels used (the reference the bench compares against)."""
    pixels = np.concatenate([[0], mask.flatten(), [0]])
    runs = np.where(pixels[1:] != pixels[:-1])[0] + 1
    runs[1::2] -= runs[::2]
    return " ".join(str(x) for x in runs)


# ---- the competitions' reference code


def severstal_mask2rle(img: np.ndarray) -> str:
    """`mask2rle` of the Severstal starter kernels ("Severstal: U-Net starter", and the competition's data page):
    `img.T.flatten()`, then the standard snippet."""
    pixels = np.concatenate([[0], img.T.flatten(), [0]])
    runs = np.where(pixels[1:] != pixels[:-1])[0] + 1
    runs[1::2] -= runs[::2]
    return " ".join(str(x) for x in runs)


def severstal_rle2mask(mask_rle: str, shape: tuple[int, int]) -> np.ndarray:
    """`rle2mask` of the same kernels: 1-indexed starts, the flat mask reshaped in Fortran order."""
    s = mask_rle.split()
    starts, lengths = [np.asarray(x, dtype=int) for x in (s[0:][::2], s[1:][::2])]
    starts -= 1
    img = np.zeros(shape[0] * shape[1], dtype=np.uint8)
    for lo, hi in zip(starts, starts + lengths, strict=True):
        img[lo:hi] = 1
    return img.reshape(shape, order="F")


def airbus_rle_encode(img: np.ndarray) -> str:
    """`rle_encode` of Airbus Ship Detection's baseline kernels (K. Mader, "Baseline U-Net Model"): one ship's mask,
    `img.T.flatten()`."""
    pixels = np.concatenate([[0], img.T.flatten(), [0]])
    runs = np.where(pixels[1:] != pixels[:-1])[0] + 1
    runs[1::2] -= runs[::2]
    return " ".join(str(x) for x in runs)


def airbus_rle_decode(mask_rle: str, shape: tuple[int, int]) -> np.ndarray:
    """`rle_decode` of the same kernel: the flat mask reshaped, then transposed (square images there)."""
    s = mask_rle.split()
    starts, lengths = [np.asarray(x, dtype=int) for x in (s[0:][::2], s[1:][::2])]
    starts -= 1
    img = np.zeros(shape[0] * shape[1], dtype=np.uint8)
    for lo, hi in zip(starts, starts + lengths, strict=True):
        img[lo:hi] = 1
    return img.reshape(shape[::-1]).T


def siim_mask2rle(img: np.ndarray, width: int, height: int) -> str:
    """`mask2rle` of SIIM-ACR's mask_functions.py (given with the competition's data): pixels 255, counted x by x
    over an image indexed [x][y]; each start is the count of pixels since the previous run ended."""
    rle = []
    last_color, current_pixel, run_start, run_length = 0, 0, -1, 0
    for x in range(width):
        for y in range(height):
            current_color = img[x][y]
            if current_color != last_color:
                if current_color == 255:
                    run_start, run_length = current_pixel, 1
                else:
                    rle += [str(run_start), str(run_length)]
                    run_start, run_length, current_pixel = -1, 0, 0
            elif run_start > -1:
                run_length += 1
            last_color = current_color
            current_pixel += 1
    return " ".join(rle)


def siim_rle2mask(rle_text: str, width: int, height: int) -> np.ndarray:
    """`rle2mask` of the same file: offsets accumulate; the mask comes back indexed [x][y]."""
    mask = np.zeros(width * height)
    array = np.asarray([int(x) for x in rle_text.split()])
    starts, lengths = array[0::2], array[1::2]
    current_position = 0
    for index, start in enumerate(starts):
        current_position += start
        mask[current_position : current_position + lengths[index]] = 255
        current_position += lengths[index]
    return mask.reshape(width, height)


def contrails_rle_encode(x: np.ndarray, fg_val: int = 1) -> list[int]:
    """`rle_encode` of the contrails competition's evaluation page: `x.T.flatten()` (down, then right)."""
    dots = np.where(x.T.flatten() == fg_val)[0]
    run_lengths: list[int] = []
    prev = -2
    for b in dots:
        if b > prev + 1:
            run_lengths.extend((int(b) + 1, 0))  # int(): under numpy 2 the list would print np.int64(...)
        run_lengths[-1] += 1
        prev = b
    return run_lengths


def contrails_list_to_string(x: list[int]) -> str:
    """`list_to_string` of the same page: '-' for an empty prediction."""
    return str(x).replace("[", "").replace("]", "").replace(",", "") if x else "-"


def _blobs(shape: tuple[int, int], seed: int, touch_end: bool = True) -> np.ndarray:
    """A mask of a few rectangles and speckles (odd sizes, runs across rows and columns)."""
    rng = np.random.default_rng(seed)
    mask = (rng.random(shape) < 0.02).astype(np.uint8)
    for _ in range(4):
        top, left = rng.integers(0, shape[0] - 3), rng.integers(0, shape[1] - 3)
        mask[top : top + rng.integers(2, 9), left : left + rng.integers(2, 13)] = 1
    if not touch_end:
        mask[-1, -1] = 0
    return mask


# ---- the dialects against their references


@pytest.mark.parametrize("seed", range(4))
def test_every_dialect_round_trips_and_agrees_with_its_competition_s_reference(seed):
    mask = _blobs((37, 53), seed)
    empty = np.zeros_like(mask)
    for dialect in DIALECTS.values():
        for m in (mask, empty):
            assert np.array_equal(dialect.decode(dialect.encode(m), m.shape), m), dialect.name
    assert DIALECTS["carvana"].encode(mask) == standard_snippet(mask)
    assert DIALECTS["severstal"].encode(mask) == severstal_mask2rle(mask)
    assert np.array_equal(DIALECTS["severstal"].decode(severstal_mask2rle(mask), mask.shape), mask)
    assert np.array_equal(severstal_rle2mask(DIALECTS["severstal"].encode(mask), mask.shape), mask)
    square = _blobs((40, 40), seed)  # Airbus images are square (768x768), which its decoder relies on
    texts = DIALECTS["airbus"].encode_objects(square)
    objects = DIALECTS["airbus"].decode_objects(texts, square.shape)
    assert np.array_equal(objects > 0, square > 0) and objects.max() == len(texts)
    for k, text in enumerate(texts, 1):
        assert text == airbus_rle_encode((objects == k).astype(np.uint8))
        assert np.array_equal(airbus_rle_decode(text, square.shape), objects == k)
    inner = _blobs((37, 53), seed, touch_end=False)  # the SIIM encoder never closes a run on the last pixel
    siim = siim_mask2rle(inner.T * 255, 53, 37)
    assert DIALECTS["siim"].encode(inner) == siim
    assert np.array_equal(DIALECTS["siim"].decode(siim, inner.shape), inner)
    assert np.array_equal(siim_rle2mask(DIALECTS["siim"].encode(inner), 53, 37).T > 0, inner > 0)
    assert DIALECTS["contrails"].encode(mask) == contrails_list_to_string(contrails_rle_encode(mask))


def test_each_dialect_writes_an_empty_mask_its_own_way():
    empty = np.zeros((4, 6), np.uint8)
    written = {name: d.encode(empty) for name, d in DIALECTS.items()}
    assert written == {"carvana": "", "severstal": "", "airbus": "", "siim": "-1", "contrails": "-"}
    assert DIALECTS["airbus"].encode_objects(empty) == [""]  # an image with no ship: one row, an empty mask
    assert contrails_list_to_string(contrails_rle_encode(empty)) == "-"


def test_overlapping_ships_are_refused_naming_them():
    with pytest.raises(rle.RLEError, match="object 2 overlaps object 1"):
        DIALECTS["airbus"].decode_objects(["1 10", "5 3"], (8, 8))


def test_a_column_major_text_is_not_a_row_major_one():
    mask = np.zeros((3, 5), np.uint8)
    mask[0, 1] = 1  # row 0, column 1
    assert DIALECTS["carvana"].encode(mask) == "2 1" and DIALECTS["severstal"].encode(mask) == "4 1"


# ---- Carvana's runs


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
    mask = rle.decode("879386 40 881253 141 883140 205", CARVANA)
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
    assert rle.encode(np.ones(CARVANA, bool)) == f"1 {1280 * 1918}"


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
        ("1.5 2", "not an integer: '1.5'"),
        ("1,2", "not an integer"),
        ("1 2 0x3 4", "not an integer: '0x3'"),
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


def test_numbers_read_any_spacing_the_same_as_single_spaces():
    """The fast parser takes single-spaced text; any other spacing reads the same numbers the plain way."""
    for text in ("3 4 10 2", "3  4 10 2", " 3 4 10 2 ", "3\t4\n10 2", "+3 4 10 2"):
        assert rle.numbers(text).tolist() == [3, 4, 10, 2], text


def test_empty_and_missing_rle_decode_to_an_empty_mask():
    assert rle.decode("", (2, 2)).sum() == 0
    assert rle.decode(float("nan"), (2, 2)).sum() == 0
    assert rle.area("3 4 10 2") == 6 and rle.area("") == 0 and rle.area("-1") == 0
