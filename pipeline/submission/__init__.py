"""The encode and submit stages: post-processing to full size, run-length encoding, the file, the upload."""

import gzip
from pathlib import Path
from typing import TextIO


def open_text(path: Path) -> TextIO:
    """A submission file (gzip-compressed or plain) opened as text: here, where encode and the submit stage both
    reach it, the submit stage without importing encode's closure (shards, numpy, joblib)."""
    with open(path, "rb") as f:
        zipped = f.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rt", newline="") if zipped else open(path, newline="")


def has_rows(path: Path) -> bool:
    """Whether a submission file holds a row under its header (read no further)."""
    with open_text(path) as f:
        f.readline()
        return bool(f.readline().strip())
