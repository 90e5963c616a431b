"""Submitting to Kaggle once per file: a description that says what produced it, a receipt, a history.

A file is identified by its SHA-256. It is not uploaded again when the local history or the
competition's own submission list (whose descriptions carry the hash) already has it, unless forced.
"""

from __future__ import annotations

import json
import os
import subprocess
from datetime import datetime, timezone
from pathlib import Path

from pipeline.download import kaggle_api
from pipeline.provenance import file_hash


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True)
        return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "no-git"


def description(note: str, sha256: str, key_params: dict) -> str:
    """'<note> | commit abc1234 | exp name | sha256:0123456789ab | key=value ...' (at most 500 chars)."""
    experiment = os.environ.get("DVC_EXP_NAME", "workspace")
    params = " ".join(f"{k}={v}" for k, v in key_params.items())
    parts = [
        p for p in (note.strip(), f"commit {git_commit()}", f"exp {experiment}", f"sha256:{sha256[:12]}", params) if p
    ]
    return " | ".join(parts)[:500]


def _history(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def submit_once(competition: str, file: Path, note: str, key_params: dict, history: Path, force: bool) -> dict:
    """Submit `file` unless it was already submitted; returns the receipt."""
    sha = file_hash(file)
    receipt = {"competition": competition, "file": str(file), "sha256": sha, "time": _now()}
    if not force:
        earlier = next((h for h in _history(history) if h["sha256"] == sha and h["competition"] == competition), None)
        if earlier is None:
            remote = kaggle_api.submissions(competition)
            earlier = next((r for r in remote if f"sha256:{sha[:12]}" in r["description"]), None)
        if earlier is not None:
            return {
                **receipt,
                "submitted": False,
                "ref": earlier["ref"],
                "reason": f"this file was already submitted (ref {earlier['ref']}); set submit.force true to "
                f"submit it again",
            }
    message = description(note, sha, key_params)
    answer = kaggle_api.submit(competition, file, message)
    receipt = {**receipt, "submitted": True, "ref": answer["ref"], "message": message, "kaggle": answer["message"]}
    with history.open("a") as f:
        f.write(json.dumps(receipt) + "\n")
    return receipt


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
