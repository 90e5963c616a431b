"""Which code made a result: the project modules a script or module imports, directly or not.

One answer for two questions: the dvc.yaml deps of each stage (a test checks them against this closure)
and the code part of the fingerprints that decide whether a checkpoint may be resumed or a shard kept.
Imports inside functions count: they run when the code does.
"""

from __future__ import annotations

import ast
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "pipeline"


def _statements(body: list) -> Iterator[ast.stmt]:
    """Every statement of a body and of the bodies nested in it (functions, classes, branches, handlers): where
    import statements can be, without visiting the expressions, which are most of a module's nodes (5x faster)."""
    for node in body:
        yield node
        for field in ("body", "orelse", "finalbody", "handlers", "cases"):
            nested = getattr(node, field, None)
            if isinstance(nested, list):
                yield from _statements(nested)


def _imported(path: Path) -> set[str]:
    """Dotted names that `path` imports from the project (`pipeline.x.y`, and for `from pipeline.x import y` also
    `pipeline.x.y`, which is a module when y is one), wherever the import statement is."""
    names = set()
    for node in _statements(ast.parse(path.read_text(), str(path)).body):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names if a.name.split(".")[0] == PACKAGE)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] == PACKAGE:
                names.add(node.module)
                names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def _file(module: str) -> Path | None:
    path = ROOT.joinpath(*module.split(".")).with_suffix(".py")
    return path if path.is_file() else None


def closure(*entries: Path) -> list[Path]:
    """Every project file that running `entries` may import, the entries and pipeline/__init__.py included."""
    seen: set[Path] = set()
    todo = [Path(e).resolve() for e in entries]
    for entry in list(todo):  # a module of a package runs its packages' __init__.py first (stages.train: stages/)
        package = entry.parent
        while (package / "__init__.py").is_file():
            todo.append(package / "__init__.py")
            package = package.parent
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for module in _imported(path):
            parts = module.split(".")
            for depth in range(1, len(parts) + 1):  # importing pipeline.x.y runs pipeline/__init__.py and x's first
                part = ".".join(parts[:depth])
                found = _file(part) or _file(part + ".__init__")
                if found is not None and found not in seen:
                    todo.append(found)
    return sorted(seen)


def code_version(*entries: Path) -> str:
    """A short hash of the closure's sources: any edit to code that `entries` runs changes it."""
    h = hashlib.sha256()
    for path in closure(*entries):
        h.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def fingerprint(obj) -> str:
    """A short stable hash of JSON-able data."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def file_hash(path: Path) -> str:
    """SHA-256 of a file's bytes, read in blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
