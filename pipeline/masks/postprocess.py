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
CHUNK = 32  # output rows up-sampled at once (bench: 16 to 64 as fast, whole maps 1.7x slower)


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


def _upsampled(prob: np.ndarray, size: Size, finish, dtype) -> np.ndarray:
    """(height, width) `dtype`: `finish` of the bilinear values, made CHUNK output rows at a time, whose few arrays
    stay in a core's cache (1.7x faster than whole 1918x1280 arrays); each value is the horizontal pass's
    (left * a) + (right * t) in float32, in that order."""
    rows, (j0, j1, a, t) = _rows(prob, size)
    out = np.empty(size, dtype)
    left, right = np.empty((CHUNK, size[1]), np.float32), np.empty((CHUNK, size[1]), np.float32)
    for start in range(0, size[0], CHUNK):
        part = rows[start : start + CHUNK]
        values = np.take(part, j0, axis=1, out=left[: len(part)])
        other = np.take(part, j1, axis=1, out=right[: len(part)])
        values *= a
        other *= t
        values += other
        out[start : start + len(part)] = finish(values)
    return out


def upsample(prob: np.ndarray, size: Size) -> np.ndarray:
    """Bilinear resize of a uint8 (h, w) map to float32 (height, width) values in [0, 255].

    The same float32 operations, in the same order, as `binary_mask` uses on single pixels, so the two agree bit
    for bit (and with torch's `interpolate`, tested); numpy alone, so that encode and its workers never import torch.
    """
    return _upsampled(prob, size, lambda values: values, np.float32)


def levels(prob: np.ndarray, size: Size) -> np.ndarray:
    """uint8 ceil of `upsample`: for any integer k, levels > k exactly where upsample > k."""
    return _upsampled(prob, size, np.ceil, np.uint8)


def _runs_of(i0: np.ndarray, i1: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Starts and lengths of the runs of output indices that share their two source indices."""
    starts = np.flatnonzero(np.r_[True, (i0[1:] != i0[:-1]) | (i1[1:] != i1[:-1])])
    return starts, np.diff(np.r_[starts, n])


@functools.lru_cache(maxsize=16)
def _grid(shape: tuple[int, int], size: Size) -> tuple[np.ndarray, ...]:
    """The geometry of one resize, the same for every image of a test set: the cells (bands of output rows by
    groups of output columns that share their four source pixels), each cell's source rows and columns, each
    row's band, and the weights of each band's rows (of each group's columns), padded with zeros to the longest
    band (group) and laid out (row in band, band) ((column in group, group)): the unsure cells are interpolated
    as one (columns, rows, cells) block, cells innermost, so that numpy runs long loops over them."""
    i0, i1, ay, ty = _axis(shape[0], size[0])
    j0, j1, ax, tx = _axis(shape[1], size[1])
    r_start, r_len = _runs_of(i0, i1, size[0])  # bands of rows
    g_start, g_len = _runs_of(j0, j1, size[1])  # groups of columns
    rows = r_start + np.arange(r_len.max())[:, None]  # (longest band, bands): each band's output rows
    cols = g_start + np.arange(g_len.max())[:, None]
    row_ok, col_ok = rows < r_start + r_len, cols < g_start + g_len
    rows, cols = np.where(row_ok, rows, 0), np.where(col_ok, cols, 0)
    zero = np.float32(0)
    arrays = (
        *(i0[r_start], i1[r_start], np.where(row_ok, ay[rows], zero), np.where(row_ok, ty[rows], zero), row_ok),
        *(j0[g_start], j1[g_start], np.where(col_ok, ax[cols], zero), np.where(col_ok, tx[cols], zero), col_ok),
        *(r_start, r_len, g_start, g_len, np.repeat(np.arange(len(r_start)), r_len)),
    )
    for array in arrays:
        array.flags.writeable = False  # shared between calls
    return arrays


def _cell_edges(prob: np.ndarray, size: Size, threshold: float) -> np.ndarray:
    """Sorted flat indices (row-major, 0-based) where the mask changes value, the end included.

    The output is tiled by cells: the block of pixels that share their four source pixels. A cell whose
    four corners all exceed the cut is the car throughout (every pixel is a convex combination of them),
    one whose corners are all below it is background; only the cells on the outline are interpolated,
    every pixel with the float32 operations of `upsample`. The edges are then read off those pixels and the
    borders between cells. An RLE needs nothing else.
    """
    level = cut(threshold)
    height, width = size
    top, bottom, ay, ty, row_ok, left, right, ax, tx, col_ok, r_start, r_len, g_start, g_len, band_of_row = _grid(
        prob.shape, tuple(size)
    )
    upper, lower = prob.take(top, axis=0), prob.take(bottom, axis=0)
    low, high = np.minimum(upper, lower), np.maximum(upper, lower)  # of each band's two source rows ...
    low = np.minimum(low[:, left], low[:, right])  # ... then of each cell's two columns
    high = np.maximum(high[:, left], high[:, right])
    state = low > level  # (bands, groups): certain cells hold their value; the others are interpolated
    unsure = ~state & (high >= level)
    groups = state.shape[1]

    # every pixel of every unsure cell, (columns, rows, cells): down the cell's two source columns, then across
    flat = np.flatnonzero(unsure)  # row-major: a cell's unsure neighbours in its band are the cells beside it here
    cb, cg = np.divmod(flat, groups)
    cells = np.arange(len(cb))
    up, down, west, east = top[cb], bottom[cb], left[cg], right[cg]  # each cell's source rows and columns
    a, t = ay.take(cb, axis=1), ty.take(cb, axis=1)  # (rows, cells); take keeps cells innermost in memory
    col0 = prob[up, west].astype(np.float32) * a + prob[down, west].astype(np.float32) * t
    col1 = prob[up, east].astype(np.float32) * a + prob[down, east].astype(np.float32) * t
    values = col0 * ax.take(cg, axis=1)[:, None, :]
    values += col1 * tx.take(cg, axis=1)[:, None, :]  # in place: 3x faster than a new array (measured)
    values = values > level
    ok = row_ok.take(cb, axis=1)  # (rows, cells): the rows each cell really has
    y = np.minimum(r_start[cb] + np.arange(len(ok))[:, None], height - 1)
    first, last = values[0], values[g_len[cg] - 1, :, cells].T

    # each row's first and last pixel, and the pixel before each row's first one
    row_first, row_last = state[band_of_row, 0], state[band_of_row, -1]
    at_start, at_end = (cg == 0) & ok, (cg == groups - 1) & ok
    row_first[y[at_start]], row_last[y[at_end]] = first[at_start], last[at_end]
    before_row = np.concatenate(([False], row_last[:-1]))

    # the pixel before each unsure cell's rows: the last of the cell to its left, or of the row before
    beside = np.diff(flat) == 1  # cell k + 1 is the one right of cell k (or the first of the next band)
    previous = np.where(cg > 0, state[cb, np.maximum(cg - 1, 0)], before_row[y])
    from_left = np.flatnonzero(beside & (cg[1:] > 0)) + 1
    previous[:, from_left] = last[:, from_left - 1]
    # a certain cell after an unsure one: its first pixel against the unsure cell's last
    nxt = np.minimum(cg + 1, groups - 1)
    right_certain = (cg + 1 < groups) & ~np.append(beside, False)

    inner = (values[1:] != values[:-1]) & col_ok[1:].take(cg, axis=1)[:, None, :] & ok
    c_in, r_in = np.divmod(np.flatnonzero(inner), inner.shape[2])
    c_in, r_in, n_in = *np.divmod(c_in, inner.shape[1]), r_in
    r_left, n_left = np.nonzero(ok & (first != previous))
    r_right, n_right = np.nonzero(ok & right_certain & (last != state[cb, nxt]))
    # two certain cells side by side that differ: only when the output is narrower than the input (else two
    # neighbouring cells share a source column, so share two corners)
    band_r, band_g = np.zeros(0, np.int64), np.zeros(0, np.int64)
    if width < prob.shape[1]:
        band_r, band_g = np.nonzero(~unsure[:, 1:] & ~unsure[:, :-1] & (state[:, 1:] != state[:, :-1]))
    # rows whose first cell is certain, against the row before
    certain_start = ~unsure[band_of_row, 0] & (row_first != before_row)

    edges = [
        y[r_in, n_in] * width + g_start[cg[n_in]] + c_in + 1,
        y[r_left, n_left] * width + g_start[cg[n_left]],
        y[r_right, n_right] * width + g_start[cg[n_right] + 1],
        (
            np.repeat(r_start[band_r], r_len[band_r])
            + np.arange(r_len[band_r].sum())
            - np.repeat(np.cumsum(r_len[band_r]) - r_len[band_r], r_len[band_r])
        )
        * width
        + np.repeat(g_start[band_g + 1], r_len[band_r]),
        np.flatnonzero(certain_start) * width,
        np.asarray([height * width] if row_last[-1] else [], dtype=np.int64),
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
    return rle.runs(full_mask(prob, size, threshold))


def binary_mask(prob: np.ndarray, size: Size, threshold: float) -> np.ndarray:
    """Full-size boolean mask, equal to `upsample(prob, size) > cut(threshold)`."""
    return rle.decode(rle.format_runs(mask_runs(prob, size, threshold)), size).astype(bool)


def full_mask(prob: np.ndarray, size: Size, threshold: float) -> np.ndarray:
    """Full-size boolean mask `upsample(prob, size) > cut(threshold)`, computed whole (for the rules that need the
    mask itself, such as the minimum area; `mask_runs` gives the same pixels as runs)."""
    if prob.shape == tuple(size):
        return prob > cut(threshold)
    level = cut(threshold)
    return _upsampled(prob, size, lambda values: values > level, bool)


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
    least `min_area` pixels (0: every object). With `top_pixels`, the empty-mask rule of the SIIM-ACR winners'
    triplet: an image gets a mask at all only when at least `top_pixels` of its pixels are above `top` (a higher
    threshold), which decides the empty images that dominate a per-(image, class) mean Dice."""

    threshold: float
    min_area: int = 0
    top: float = 0.0
    top_pixels: int = 0

    @property
    def whole(self) -> bool:
        """Whether the rule needs the whole mask (not only its runs): a minimum area or the empty-mask rule."""
        return bool(self.min_area or self.top_pixels)

    def apply(self, prob: np.ndarray, size: Size) -> np.ndarray:
        """Full-size boolean mask of one uint8 probability map (h, w)."""
        if self.top_pixels and int(full_mask(prob, size, self.top).sum()) < self.top_pixels:
            return np.zeros(size, dtype=bool)
        return remove_small(full_mask(prob, size, self.threshold), self.min_area)
