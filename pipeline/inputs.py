"""The files a stage reads that params only name: their content, as data DVC can depend on.

`train.init_from`, a local `train.model.encoder_weights` file and `download.local.path` are strings in
params.yaml; replacing the file behind one changes no param, so DVC would keep the model made from the old file.
Likewise `blend.members` and `train.pseudo_labels.source` name experiments, which can be run again under the
same names.
The inputs stage (always run: it costs a few file stats) writes, per stage that reads such files, a small JSON of
their content hashes; the stage depends on that JSON, and reruns exactly when it changes. Hashes are remembered
by (size, modification time), so a large unchanged file is not read again.
"""

from __future__ import annotations

import json
from pathlib import Path

from pipeline import members, paths
from pipeline.paths import is_weights_file
from pipeline.provenance import file_hash


class HashCache:
    """SHA-256 of files, remembered by path, size and modification time in a JSON file."""

    def __init__(self, path: Path):
        self.path = path
        self.seen = json.loads(path.read_text()) if path.is_file() else {}

    def digest(self, file: Path) -> str:
        st = file.stat()
        key = f"{file.resolve()}\0{st.st_size}\0{st.st_mtime_ns}"
        if key not in self.seen:
            self.seen[key] = file_hash(file)
        return self.seen[key]

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self.seen, indent=0) + "\n")


def _file(value: str, key: str, cache: HashCache) -> dict:
    path = Path(value)
    if not path.is_file():
        return {key: value, "sha256": None}  # the stage itself says the file is missing, naming the key
    return {key: value, "sha256": cache.digest(path)}


def _folder(value: str) -> dict:
    """Every file of a local data folder, by relative path, size and modification time (its content would mean
    reading 25 GB on every run)."""
    root = paths.from_project(value)
    if not root.is_dir():
        return {"path": value, "files": None}
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return {"path": value, "files": [[str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns] for p in files]}


def fingerprints(p: dict, cache: HashCache) -> dict[str, dict]:
    """{stage: what its outside files are now}, for the stages that read any; `p` as params.load gives it."""
    download, train = p["download"], p["train"]
    weights = train.model.encoder_weights
    return {
        "download": {"local": _folder(download.local.path) if download.source == "local" else None},
        "train": {
            "init_from": _file(train.init_from, "init_from", cache) if train.init_from else None,
            "encoder_weights": _file(weights, "encoder_weights", cache) if is_weights_file(weights) else None,
            "pseudo_labels": (
                members.resolve([train.pseudo_labels.source], needed=members.PREDICTIONS)[0]
                if train.pseudo_labels.source
                else None
            ),
        },
        "blend": {"members": members.resolve(p["blend"].members)},  # the commit and outs each name stands for
    }


def write(p: dict, out: Path, cache: HashCache, more: dict[str, dict] | None = None) -> list[str]:
    """Write out/<stage>.json for every stage (`more`: what else a stage reads from outside, e.g. the environment the
    package stage bundles); the names of those whose content changed."""
    out.mkdir(parents=True, exist_ok=True)
    changed = []
    for stage, found in {**fingerprints(p, cache), **(more or {})}.items():
        path = out / f"{stage}.json"
        text = json.dumps(found, indent=1, sort_keys=True) + "\n"
        if not path.is_file() or path.read_text() != text:
            path.write_text(text)
            changed.append(stage)
    return changed
