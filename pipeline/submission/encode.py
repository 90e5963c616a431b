"""The submission file: up-sample, apply the chosen rules and run-length encode every prediction, in parallel, into
the rows of the competition's sample submission, in its order, gzip-compressed as it streams (`.csv.gz`; a kernel
writes the plain `submission.csv` that code competitions score).

Each piece of a shard (at most `PIECE` images) is encoded by one worker into a complete gzip member; the
members are written one after the other (a multi-member gzip is one valid .gz file), so compression runs
on every core, the cores stay evenly loaded to the end, and memory holds one piece's text per worker.
The file checks itself before it replaces the previous one: the sample's header, its rows (every key field) once
each and in order, every run-length text valid for its image, and for a sample of images (one in 8, at most 200) the
rows decoded by the competition's dialect against the masks made again by the plain path.
"""

from __future__ import annotations

import csv
import errno
import gzip
import hashlib
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
from joblib import Parallel, delayed
from tqdm import tqdm

from pipeline.competitions.base import Competition, SubmissionFormat
from pipeline.errors import UserError
from pipeline.masks.postprocess import Rule
from pipeline.masks.rle import RLEError
from pipeline.prediction import shards
from pipeline.submission import open_text

# gzip level 4: on Carvana's RLE text 3.4x faster than level 6 for a file 3 % larger (measured on the demo)
COMPRESSLEVEL = 4
PIECE = 100  # images per task: small enough to balance the cores, large enough to amortise a task
CHECKED = 200  # images whose rows the self-check decodes again, at most ...
SPACING = 8  # ... and at most one in 8: each costs a full-size up-sampling and a decoding (~8 ms on a CPU core)


class SubmissionError(UserError):
    """The submission would not be valid; nothing was overwritten."""


def digest(mask: np.ndarray) -> str:
    """A short hash of a boolean mask and its shape."""
    packed = np.packbits(np.asarray(mask, dtype=bool), axis=None).tobytes()
    return hashlib.sha1(packed + str(mask.shape).encode()).hexdigest()[:16]


def encode_piece(
    path: Path,
    start: int,
    stop: int,
    first: int,
    comp: type[Competition],
    fmt: SubmissionFormat,
    rules: list[Rule],
    every: int,
    compress: bool = True,
) -> tuple[list[str], bytes, list[tuple[int, str, tuple[int, int]]]]:
    """(image names, their rows as a gzip member (or plain text), self-check entries) for the images start:stop of
    one shard.

    `fmt` holds the rows of exactly these images; image `first + i` is checked when its index divides by `every`:
    each of its rows gives (its line in the file, the digest of its mask, the image's size).
    """
    names, lines, checks = [], [], []
    line = 1  # of this piece's rows; the caller adds the rows before it
    for i, (name, size, probs) in enumerate(shards.read_shard(path, start, stop)):
        classes = fmt.classes(i)
        texts = comp.texts(probs, size, rules, sorted(set(classes)))
        for cls, text in texts.items():
            try:
                comp.dialect.pairs(text, size)
            except RLEError as err:
                raise SubmissionError(f"{name}, class {cls + 1}: its run-length text is broken ({err})") from None
        names.append(name)
        lines += fmt.lines(i, texts)
        if (first + i) % every == 0:
            masks = comp.masks(probs, size, rules, sorted(set(classes)))
            checks += [(line + k, digest(masks[cls]), size) for k, cls in enumerate(classes)]
        line += len(classes)
    text = "".join(lines).encode()
    member = gzip.compress(text, compresslevel=COMPRESSLEVEL, mtime=0) if compress else text  # same rows, same bytes
    return names, member, checks


def _pieces(predictions: Path, manifest: dict):
    """(shard, start, stop, first image) tasks of at most PIECE images, in the sample submission's order."""
    size = manifest["shard_size"]
    for k in range(manifest["shards"]):
        count = min(size, manifest["images"] - k * size)
        for start in range(0, count, PIECE):
            yield predictions / shards.shard_name(k), start, min(start + PIECE, count), k * size + start


def write(
    predictions: Path, comp: type[Competition], fmt: SubmissionFormat, rules: list[Rule], out: Path, jobs: int
) -> dict:
    """Write the submission of every test image in `fmt`'s rows, gzip-compressed when `out` ends in .gz; returns
    {'rows', 'bytes'}."""
    manifest = shards.check_complete(predictions)
    if manifest["images"] != len(fmt.images):
        raise SubmissionError(
            f"{predictions} holds {manifest['images']} predictions but the sample submission lists "
            f"{len(fmt.images)} images; run `dvc repro predict`"
        )
    pieces = list(_pieces(predictions, manifest))
    every = max(SPACING, len(fmt.images) // CHECKED)
    compress = out.suffix == ".gz"
    starts = np.cumsum([0] + [len(r) for r in fmt.rows])  # the file line (after the header) of each image's rows
    out.parent.mkdir(parents=True, exist_ok=True)
    part = out.with_name(out.name + ".part")
    position, checks = 0, []
    try:
        with open(part, "wb") as f:
            f.write(gzip.compress(fmt.header.encode(), mtime=0) if compress else fmt.header.encode())
            tasks = (
                delayed(encode_piece)(
                    path, start, stop, first, comp, _rows_of(fmt, first, first + stop - start), rules, every, compress
                )
                for path, start, stop, first in pieces
            )
            results = Parallel(n_jobs=jobs if len(pieces) > 1 else 1, return_as="generator")(tasks)  # no pool for one
            with tqdm(total=len(fmt.images), desc="encode", unit="img") as bar:
                for (shard, _, _, first), (names, member, piece_checks) in zip(pieces, results, strict=True):
                    expected = list(fmt.images[position : position + len(names)])
                    if names != expected:
                        raise SubmissionError(
                            f"{shard} holds {names[:1]} where the sample submission has {expected[:1]}; "
                            f"the predictions are out of date: run `dvc repro predict`"
                        )
                    f.write(member)
                    checks += [(int(starts[first]) + line, d, s) for line, d, s in piece_checks]
                    position += len(names)
                    bar.update(len(names))
        if position != len(fmt.images):
            raise SubmissionError(f"{position} images written but the sample submission lists {len(fmt.images)}")
        rows = check_file(part, fmt, comp, checks)
    except OSError as err:
        part.unlink(missing_ok=True)
        if err.errno == errno.ENOSPC:
            raise SubmissionError(
                f"disk full while writing {out}; the previous file is kept: free some space and run `dvc repro "
                f"encode` again"
            ) from None
        raise
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    os.replace(part, out)
    return {"rows": rows, "bytes": out.stat().st_size}


def _rows_of(fmt: SubmissionFormat, start: int, stop: int) -> SubmissionFormat:
    """The format of the images start:stop alone (what one worker needs)."""
    return replace(fmt, images=fmt.images[start:stop], rows=fmt.rows[start:stop])


def check_file(path: Path, fmt: SubmissionFormat, comp: type[Competition], checks: list) -> int:
    """Re-read a written submission: the header, every row's key fields in the sample's order, and the rows in
    `checks` ((line, mask digest, image size)) decoded again by the competition's dialect. Returns the row count."""
    expected = [fields for rows in fmt.rows for _, fields in rows]
    due = {line: (d, size) for line, d, size in checks}
    keys = [i for i in range(len(fmt.columns)) if i != fmt.value]
    with open_text(path) as f:
        if f.readline() != fmt.header:
            raise SubmissionError(f"{path} does not start with the sample submission's header {fmt.header.strip()!r}")
        count = 0
        for count, fields in enumerate(csv.reader(f), 1):
            if count > len(expected) or [fields[i] for i in keys] != [expected[count - 1][i] for i in keys]:
                raise SubmissionError(
                    f"{path}, row {count}: {','.join(fields[i] for i in keys)} is not the sample submission's row there"
                )
            if count in due:
                want, size = due[count]
                try:
                    ok = digest(comp.dialect.decode(fields[fmt.value], size)) == want
                except RLEError as err:
                    raise SubmissionError(f"{path}, row {count}: its run-length text does not decode ({err})") from None
                if not ok:
                    raise SubmissionError(
                        f"{path}, row {count} ({','.join(fields[i] for i in keys)}): decoded as {comp.dialect.name} "
                        f"runs it is not the mask it was made from"
                    )
    if count != len(expected):
        raise SubmissionError(f"{path} has {count} rows; the sample submission has {len(expected)}")
    return count


def read(path: Path) -> dict[str, str]:
    """{first column: run-length text} of a submission file with one row per image (Carvana's layout)."""
    with open_text(path) as f:
        f.readline()
        return {name: code for name, code in csv.reader(f)}


def read_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of any submission file."""
    with open_text(path) as f:
        reader = csv.reader(f)
        return next(reader), list(reader)
