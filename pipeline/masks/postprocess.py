"""From model output to a full-size mask, the one way evaluate and encode both use: up-sampling, the cut,
and the removal of objects smaller than a minimum area.

Probabilities are stored as uint8 (p * 255, rounded) at the model size. The full-size value of a pixel
is their bilinear interpolation (pixel centres aligned, edges clamped, as torch's `align_corners=False`)
computed in float32 by `upsample`; the pixel is the car when that value exceeds `cut(threshold)`.
`mask_runs` gives the run-length encoding of exactly `upsample(...) > cut`, but computes the
interpolation only inside the cells whose corners straddle the cut (the car's outline); everywhere
else the answer is known from the corners. Because evaluate sweeps thresholds on these same values,
the Dice it reports is the Dice the submission gets.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from pipeline.images import Size
from pipeline.masks import rle

CELL_FACTOR = 16  # output pixels per input pixel from which the cell-by-cell path is the faster one


def to_uint8(probs) -> np.ndarray:
    """Probabilities in [0, 1] (a torch tensor of any shape) -> uint8 0..255."""
    import torch

    return (probs.float().clamp(0, 1) * 255.0).round().to(torch.uint8).cpu().numpy()


def car_probability(probs: np.ndarray) -> np.ndarray:
    """uint8 (h, w) probability of the car from uint8 (C, h, w): the one channel, or 1 - P(background) with
    several classes (Carvana's score is on the car whatever the model predicts)."""
    return probs[0] if probs.shape[0] == 1 else 255 - probs[0]


def class_maps(probs: np.ndarray, size: Size) -> np.ndarray:
    """uint8 (C, h, w) softmax probabilities -> (H, W) class indices, deciding after up-sampling each class."""
    return np.stack([upsample(q, size) for q in probs]).argmax(axis=0).astype(np.uint8)


def cut(threshold: float) -> int:
    """The uint8 level a probability must exceed to count as the car."""
    return int(round(threshold * 255))


def _axis(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per output index: the two source indices and their float32 weights (1 - t, t)."""
    pos = (np.arange(n_out, dtype=np.float32) + np.float32(0.5)) * np.float32(n_in / n_out) - np.float32(0.5)
    i0 = np.floor(pos).astype(np.int64)
    t = (pos - i0).astype(np.float32)
    clamped = (i0 < 0) | (i0 >= n_in - 1)
    i0 = np.clip(i0, 0, n_in - 1)
    i1 = np.where(clamped, i0, i0 + 1)
    t[clamped] = 0.0
    return i0, i1, (np.float32(1) - t).astype(np.float32), t


def _rows(prob: np.ndarray, size: Size):
    """The vertical pass (H, w) float32 and the horizontal sampling of the bilinear resize."""
    i0, i1, a, t = _axis(prob.shape[0], size[0])
    p = prob.astype(np.float32)
    rows = np.take(p, i0, axis=0) * a[:, None] + np.take(p, i1, axis=0) * t[:, None]
    return rows, _axis(prob.shape[1], size[1])


def upsample(prob: np.ndarray, size: Size) -> np.ndarray:
    """Bilinear resize of a uint8 (h, w) map to float32 (height, width) values in [0, 255].

    The same float32 operations, in the same order, as `binary_mask` uses on single pixels, so the two agree bit
    for bit (and with torch's `interpolate`, tested); numpy alone, so that encode and its workers never import torch.
    """
    rows, (j0, j1, a, t) = _rows(prob, size)
    return np.take(rows, j0, axis=1) * a + np.take(rows, j1, axis=1) * t


def levels(prob: np.ndarray, size: Size) -> np.ndarray:
    """uint8 ceil of `upsample`: for any integer k, levels > k exactly where upsample > k."""
    return np.ceil(upsample(prob, size)).astype(np.uint8)


def _runs_of(i0: np.ndarray, i1: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Starts and lengths of the runs of output indices that share their two source indices."""
    starts = np.flatnonzero(np.r_[True, (i0[1:] != i0[:-1]) | (i1[1:] != i1[:-1])])
    return starts, np.diff(np.r_[starts, n])


@functools.lru_cache(maxsize=16)
def _grid(shape: tuple[int, int], size: Size) -> tuple[np.ndarray, ...]:
    """The geometry of one resize, the same for every image of a test set: both axes' source indices and
    weights, the bands of rows and groups of columns that form the cells, and each row's band."""
    i0, i1, ay, ty = _axis(shape[0], size[0])
    j0, j1, ax, tx = _axis(shape[1], size[1])
    r_start, r_len = _runs_of(i0, i1, size[0])  # bands of rows
    g_start, g_len = _runs_of(j0, j1, size[1])  # groups of columns
    band_of_row = np.repeat(np.arange(len(r_start)), r_len)
    arrays = (i0, i1, ay, ty, j0, j1, ax, tx, r_start, r_len, g_start, g_len, band_of_row)
    for array in arrays:
        array.flags.writeable = False  # shared between calls
    return arrays


def _cell_edges(prob: np.ndarray, size: Size, threshold: float) -> np.ndarray:
    """Sorted flat indices (row-major, 0-based) where the mask changes value, the end included.

    The output is tiled by cells: the block of pixels that share their four source pixels. A cell whose
    four corners all exceed the cut is the car throughout (every pixel is a convex combination of them),
    one whose corners are all below it is background; only the cells on the outline are interpolated,
    pixel by pixel, with the float32 operations of `upsample`. The edges are then read off those pixels
    and the borders between cells. An RLE needs nothing else.
    """
    level = cut(threshold)
    height, width = size
    i0, i1, ay, ty, j0, j1, ax, tx, r_start, r_len, g_start, g_len, band_of_row = _grid(prob.shape, tuple(size))
    q = prob.astype(np.int16)
    corners = [
        np.take(np.take(q, rows[r_start], axis=0), cols[g_start], axis=1) for rows in (i0, i1) for cols in (j0, j1)
    ]
    low, high = np.minimum.reduce(corners), np.maximum.reduce(corners)
    state = low > level  # (bands, groups): certain cells hold their value; the others are interpolated
    unsure = ~state & (high >= level)

    # every pixel of every unsure cell, one row segment at a time, in row-major order within a cell
    rs, gs = np.nonzero(unsure)
    seg_r, seg_g = np.repeat(rs, r_len[rs]), np.repeat(gs, r_len[rs])
    seg_y = r_start[seg_r] + np.arange(len(seg_r)) - np.repeat(np.cumsum(r_len[rs]) - r_len[rs], r_len[rs])
    counts = g_len[seg_g]
    offsets = np.cumsum(counts) - counts
    x = np.repeat(g_start[seg_g] - offsets, counts) + np.arange(counts.sum())
    # a segment shares its two source rows and columns: the vertical pass is one value per segment
    p = prob.astype(np.float32)
    top, bottom, a, t = i0[seg_y], i1[seg_y], ay[seg_y], ty[seg_y]
    left_col, right_col = j0[g_start[seg_g]], j1[g_start[seg_g]]
    row0 = p[top, left_col] * a + p[bottom, left_col] * t
    row1 = p[top, right_col] * a + p[bottom, right_col] * t
    values = np.repeat(row0, counts) * ax[x] + np.repeat(row1, counts) * tx[x] > level
    change = values[1:] != values[:-1]
    change[offsets[1:] - 1] = False  # a segment's first pixel is compared below, with its true neighbour
    inner = np.flatnonzero(change) + 1
    y_inner = seg_y[np.searchsorted(offsets, inner, side="right") - 1]
    seg_first, seg_last = values[offsets], values[offsets + counts - 1]

    # each row's first and last pixel
    first, last = state[band_of_row, 0], state[band_of_row, -1]
    at_start, at_end = seg_g == 0, seg_g == len(g_start) - 1
    first[seg_y[at_start]], last[seg_y[at_end]] = seg_first[at_start], seg_last[at_end]
    before_row = np.r_[False, last[:-1]]  # the pixel before each row's first one

    # the pixel before each segment: the previous cell's last pixel in the same row, or the row before's
    key = seg_y * len(g_start) + seg_g  # sorted: segments are made band by band, cell by cell, row by row
    order = np.argsort(key, kind="stable")
    key_sorted, last_sorted = key[order], seg_last[order]
    prev_key = key - 1
    found = np.searchsorted(key_sorted, prev_key)
    found = np.minimum(found, len(key_sorted) - 1)
    prev_unsure = (seg_g > 0) & (key_sorted[found] == prev_key) if len(key_sorted) else np.zeros(0, bool)
    previous = np.where(seg_g > 0, state[seg_r, np.maximum(seg_g - 1, 0)], before_row[seg_y])
    previous[prev_unsure] = last_sorted[found[prev_unsure]]
    left = seg_first != previous
    # a certain cell after an unsure one: its first pixel against that segment's last
    nxt = seg_g + 1 < len(g_start)
    right_certain = nxt & ~unsure[seg_r, np.minimum(seg_g + 1, len(g_start) - 1)]
    right = right_certain & (seg_last != state[seg_r, np.minimum(seg_g + 1, len(g_start) - 1)])
    # two certain cells side by side that differ (possible only when the output is smaller than the input)
    band_r, band_g = np.nonzero(~unsure[:, 1:] & ~unsure[:, :-1] & (state[:, 1:] != state[:, :-1]))
    # rows whose first cell is certain, against the row before
    certain_start = ~unsure[band_of_row, 0] & (first != before_row)

    edges = [
        y_inner * width + x[inner],
        seg_y[left] * width + g_start[seg_g[left]],
        seg_y[right] * width + g_start[seg_g[right] + 1],
        (
            np.repeat(r_start[band_r], r_len[band_r])
            + np.arange(r_len[band_r].sum())
            - np.repeat(np.cumsum(r_len[band_r]) - r_len[band_r], r_len[band_r])
        )
        * width
        + np.repeat(g_start[band_g + 1], r_len[band_r]),
        np.flatnonzero(certain_start) * width,
        np.asarray([height * width] if last[-1] else [], dtype=np.int64),
    ]
    return np.sort(np.concatenate(edges))


def mask_runs(prob: np.ndarray, size: Size, threshold: float) -> np.ndarray:
    """RLE (start, length) pairs, starts 1-indexed, of `upsample(prob, size) > cut(threshold)`.

    Large up-sampling factors (the usual case: 1/8 to 1/4 scale) go cell by cell; small ones are faster
    as one full-size pass; the same size needs no interpolation at all. All three give the same runs.
    """
    if prob.shape == tuple(size):
        return rle.runs(prob > cut(threshold))  # weights 1 and 0: the values are the probabilities
    if size[0] * size[1] >= CELL_FACTOR * prob.size:
        return rle.runs_from_edges(_cell_edges(prob, size, threshold))
    return rle.runs(upsample(prob, size) > cut(threshold))


def binary_mask(prob: np.ndarray, size: Size, threshold: float) -> np.ndarray:
    """Full-size boolean mask, equal to `upsample(prob, size) > cut(threshold)`."""
    return rle.decode(rle.format_runs(mask_runs(prob, size, threshold)), size).astype(bool)


def full_mask(prob: np.ndarray, size: Size, threshold: float) -> np.ndarray:
    """Full-size boolean mask `upsample(prob, size) > cut(threshold)`, computed whole (for the rules that need the
    mask itself, such as the minimum area; `mask_runs` gives the same pixels as runs)."""
    if prob.shape == tuple(size):
        return prob > cut(threshold)
    return upsample(prob, size) > cut(threshold)


EIGHT = np.ones((3, 3), dtype=bool)  # objects are 8-connected, as cv2.connectedComponents counts them


def objects(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(label map, pixels per label) of the mask's 8-connected objects; label 0 is the background."""
    from scipy import ndimage

    labels, _ = ndimage.label(mask, structure=EIGHT)
    return labels, np.bincount(labels.reshape(-1))


def remove_small(mask: np.ndarray, min_area: int) -> np.ndarray:
    """The boolean mask without its objects of fewer than `min_area` pixels (the Severstal leaders' rule)."""
    if min_area <= 1 or not mask.any():
        return mask.astype(bool)
    labels, sizes = objects(mask)
    keep = sizes >= min_area
    keep[0] = False
    return keep[labels]


@dataclass(frozen=True)
class Rule:
    """How one output channel becomes a submitted mask: probability above `threshold`, then only the objects of at
    least `min_area` pixels (0: every object)."""

    threshold: float
    min_area: int = 0

    def apply(self, prob: np.ndarray, size: Size) -> np.ndarray:
        """Full-size boolean mask of one uint8 probability map (h, w)."""
        return remove_small(full_mask(prob, size, self.threshold), self.min_area)
