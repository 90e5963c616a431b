"""Carvana run-length encoding: row-major, 1-indexed `start length` pairs.

Kaggle scores Carvana submissions with this order. Many public helpers (Airbus, Severstal) are
column-major; a column-major RLE of a Carvana mask decodes into garbage, so the order is a named
constant here and every function in this module uses it.
"""

from __future__ import annotations

import numpy as np

from pipeline.errors import UserError

CARVANA_SHAPE = (1280, 1918)  # (height, width) of every Carvana image and mask
ORDER = "C"  # row-major: pixel k is (k // width, k % width)


class RLEError(UserError, ValueError):
    """A run-length string that cannot describe a mask of the given shape."""


def runs(mask: np.ndarray) -> np.ndarray:
    """Return the (start, length) pairs of a mask as a flat int array, starts 1-indexed.

    Works on the bit-packed mask (1/8 of the bytes) instead of comparing or padding the full mask,
    which is what makes it about 6x faster than the usual snippet (bench/rle.py) for the same output.
    """
    flat = np.ascontiguousarray(mask).reshape(-1, order=ORDER)
    if flat.dtype != np.bool_ and flat.dtype != np.uint8:
        flat = flat != 0
    n = flat.size
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    packed = np.packbits(flat)  # any non-zero byte is a 1; pixel i is bit 7 - i % 8 of byte i // 8
    changed = packed >> 1  # each bit now holds the pixel before it ...
    changed[1:] |= packed[:-1] * np.uint8(128)  # ... across byte borders too (uint8 << is not vectorised)
    changed ^= packed  # 1 where a pixel differs from the one before it (pixel -1 counts as 0)
    nonzero = np.flatnonzero(changed != 0)
    byte, bit = np.nonzero(np.unpackbits(changed[nonzero]).reshape(-1, 8))
    edges = nonzero[byte] * 8 + bit  # 0-based pixel where a run starts or ends
    if n % 8:
        edges = edges[edges < n]  # packbits pads with zeros, which can fake an edge at n
    if flat[n - 1]:
        edges = np.append(edges, n)
    return runs_from_edges(edges)


def encode(mask: np.ndarray) -> str:
    """Encode a 2-D mask (non-zero = car) as Carvana's RLE string; an empty mask gives ''."""
    return format_runs(runs(mask))


def runs_from_edges(edges: np.ndarray) -> np.ndarray:
    """(start, length) pairs, starts 1-indexed, from the sorted 0-based flat indices where a mask changes."""
    pairs = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
    out = np.empty_like(pairs)
    out[:, 0] = pairs[:, 0] + 1
    out[:, 1] = pairs[:, 1] - pairs[:, 0]
    return out.reshape(-1)


def format_runs(pairs: np.ndarray) -> str:
    return str(pairs.tolist())[1:-1].replace(",", "")  # C-speed formatting of the int list


def parse(rle: str, shape: tuple[int, int] = CARVANA_SHAPE) -> np.ndarray:
    """Parse and validate an RLE string into an (n, 2) array of 0-based (start, end) pairs.

    Raises RLEError naming what is wrong: odd count, non-numbers, runs outside the image, unsorted
    or overlapping runs.
    """
    if not isinstance(rle, str):
        if rle is None or (isinstance(rle, float) and np.isnan(rle)):
            return np.zeros((0, 2), dtype=np.int64)
        raise RLEError(f"RLE must be a string, got {type(rle).__name__}")
    text = rle.strip()
    if not text:
        return np.zeros((0, 2), dtype=np.int64)
    try:
        values = np.array(text.split(), dtype=np.int64)
    except ValueError:
        bad = next(tok for tok in text.split() if not tok.lstrip("-").isdigit())
        raise RLEError(f"RLE holds a value that is not an integer: {bad!r}") from None
    return check(values, shape)


def check(values: np.ndarray, shape: tuple[int, int] = CARVANA_SHAPE) -> np.ndarray:
    """Validate flat start/length values; return (n, 2) 0-based (start, end) pairs or raise RLEError."""
    if values.size % 2:
        raise RLEError(f"RLE has {values.size} numbers; it must be start/length pairs")
    pairs = values.reshape(-1, 2)
    starts, lengths = pairs[:, 0], pairs[:, 1]
    total = shape[0] * shape[1]
    if (starts < 1).any():
        raise RLEError(f"RLE start {int(starts[starts < 1][0])} is below 1: starts are 1-indexed")
    if (lengths < 1).any():
        raise RLEError(f"RLE run length {int(lengths[lengths < 1][0])} is below 1")
    ends = starts - 1 + lengths  # 0-based, exclusive
    if (ends > total).any():
        i = int(np.argmax(ends > total))
        raise RLEError(
            f"RLE run '{starts[i]} {lengths[i]}' ends at pixel {ends[i]}, past the last pixel "
            f"{total} of a {shape[0]}x{shape[1]} (height x width) mask"
        )
    if starts.size > 1:
        bad = np.flatnonzero(starts[1:] - 1 < ends[:-1])
        if bad.size:
            i = int(bad[0])
            raise RLEError(
                f"RLE runs are unsorted or overlap: '{starts[i]} {lengths[i]}' then '{starts[i + 1]} {lengths[i + 1]}'"
            )
    return np.stack((starts - 1, ends), axis=1)


def validate(rle: str, shape: tuple[int, int] = CARVANA_SHAPE) -> None:
    """Raise RLEError when `rle` is not a valid mask of `shape`."""
    parse(rle, shape)


def decode(rle: str, shape: tuple[int, int] = CARVANA_SHAPE) -> np.ndarray:
    """Decode an RLE string into a uint8 mask of `shape` (height, width) with values 0/1."""
    flat = np.zeros(shape[0] * shape[1], dtype=np.uint8)
    for start, end in parse(rle, shape).tolist():
        flat[start:end] = 1
    return flat.reshape(shape, order=ORDER)


def area(rle: str) -> int:
    """Number of mask pixels an RLE string covers, without decoding it."""
    text = rle.strip() if isinstance(rle, str) else ""
    if not text:
        return 0
    return int(np.array(text.split(), dtype=np.int64)[1::2].sum())
