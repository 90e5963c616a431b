"""Kaggle downloads kept once, outside every workspace, and hard-linked into data/raw.

A queued or temporary experiment (`dvc exp run --queue`, `--temp`) runs in a fresh copy of the project, where
data/raw (a `cache: false` out: Kaggle's rules keep the data out of DVC remotes) is empty; without a store, every
such experiment would download the competition again (25 GB for Carvana) and keep another copy on disk. Here the
download lives in the store of the main project (DVC tells every stage where that is: `DVC_ROOT`), or in the
folder `$COMPETITIONS_STORE` names (to share it between clones); data/raw holds hard links to it, so no workspace
adds a byte. A record beside the files says which of them were downloaded completely and passed the CRC check, so
a workspace that finds them unchanged asks Kaggle nothing and reads nothing.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ENV = "COMPETITIONS_STORE"
FOLDER = ".competitions"  # in the main project, beside .dvc (ignored by git and DVC)
RECORD = "checked.json"


def store_dir(competition: str) -> Path:
    """Where the Kaggle files of `competition` are kept."""
    base = os.environ.get(ENV)
    root = Path(base) if base else Path(os.environ.get("DVC_ROOT") or ".").resolve() / FOLDER
    return root / competition


@contextmanager
def locked(store: Path) -> Iterator[None]:
    """One run at a time fills a competition's store: a second (another queued experiment, another clone) waits,
    then finds the files downloaded and checked instead of downloading them too. The lock is the kernel's (flock):
    a run that dies releases it."""
    import fcntl

    store.mkdir(parents=True, exist_ok=True)
    with open(store / ".lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"{store}: another run is downloading {store.name}; waiting for it to finish")
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _stat(path: Path) -> dict:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def is_checked(store: Path, names: list[str]) -> bool:
    """True when every file is there, unchanged since it was downloaded and checked completely."""
    record = store / RECORD
    if not record.is_file():
        return False
    seen = json.loads(record.read_text())
    return all((store / n).is_file() and seen.get(n) == _stat(store / n) for n in names)


def mark_checked(store: Path, names: list[str]) -> None:
    """Record these files as complete and checked, as they are now."""
    record = store / RECORD
    seen = json.loads(record.read_text()) if record.is_file() else {}
    seen.update({n: _stat(store / n) for n in names})
    record.write_text(json.dumps(seen, indent=2) + "\n")


def keep(files: list[Path], competition: str) -> list[str]:
    """Put files of an earlier download (data/raw before the store existed) into the store, linked when the disk
    allows, so that replacing data/raw loses nothing; returns the names kept."""
    store = store_dir(competition)
    kept = []
    for path in files:
        target = store / path.name
        if target.exists():
            continue
        store.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, target)
        except OSError:  # another disk: moved, not copied
            shutil.move(path, target)
        kept.append(path.name)
    return kept
