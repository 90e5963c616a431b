"""Submitting to Kaggle once per file: a description that says what produced it, a receipt, a history, the scores.

A file is identified by its SHA-256. It is not uploaded again when the local history or the competition's own
submission list already has it, unless forced. Every description starts with the hash, so the competition's
list is a history that survives anything local: a reply lost after an upload, a queued experiment's temporary
workspace, a fresh clone. The leaderboard's scores of each upload (public, and private once Kaggle shows it) are
kept by ref beside the history and copied into the receipt, which DVC declares a metric: `dvc exp show` puts
the leaderboard beside the out-of-fold Dice of every experiment that submitted.
"""

from __future__ import annotations

import json
import os
import subprocess
from datetime import datetime, timezone
from pathlib import Path

from pipeline.kaggle_api import submissions
from pipeline.provenance import file_hash


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True)
        return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "no-git"


DESCRIPTION_LIMIT = 500  # characters of a submission description that Kaggle keeps


def description(note: str, sha256: str, key_params: dict) -> str:
    """'sha256:0123456789ab | commit abc1234 | exp name | key=value ... | <note>', at most 500 characters.

    The tag that identifies the file comes first and the note last, so that cutting the text to Kaggle's limit
    cuts the note, never the tag that keeps this file from being uploaded twice.
    """
    experiment = os.environ.get("DVC_EXP_NAME", "workspace")
    params = " ".join(f"{k}={v}" for k, v in key_params.items())
    parts = [f"sha256:{sha256[:12]}", f"commit {git_commit()}", f"exp {experiment}", params, note.strip()]
    return " | ".join(p for p in parts if p)[:DESCRIPTION_LIMIT]


def _history(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def earlier(competition: str, sha: str, history: Path) -> dict | None:
    """The submission of these bytes (a file's, or a kernel bundle's hash) that the local history or the
    competition's own list (by the hash that starts every description) already has; None when there is none."""
    found = next((h for h in _history(history) if h["sha256"] == sha and h["competition"] == competition), None)
    if found is None:
        remote = submissions.submissions(competition)
        found = next((r for r in remote if f"sha256:{sha[:12]}" in r["description"]), None)
    return found


def already(receipt: dict, found: dict, what: str) -> dict:
    """The receipt of a submission not made because `found` made it already."""
    return {
        **receipt,
        "submitted": False,
        "ref": found["ref"],
        "reason": f"this {what} was already submitted (ref {found['ref']}); set submit.force true to submit it again",
    }


def record(history: Path, receipt: dict) -> None:
    """Append a submission to the history, which no rerun deletes: nothing is submitted twice."""
    history.parent.mkdir(parents=True, exist_ok=True)
    with history.open("a") as f:
        f.write(json.dumps(receipt) + "\n")


def submit_once(competition: str, file: Path, note: str, key_params: dict, history: Path, force: bool) -> dict:
    """Submit `file` unless it was already submitted; returns the receipt."""
    sha = file_hash(file)
    receipt = {"competition": competition, "file": str(file), "sha256": sha, "time": now()}
    found = None if force else earlier(competition, sha, history)
    if found is not None:
        return already(receipt, found, "file")
    message = description(note, sha, key_params)
    answer = submissions.submit(competition, file, message)
    receipt = {**receipt, "submitted": True, "ref": answer["ref"], "message": message, "kaggle": answer["message"]}
    record(history, receipt)
    return receipt


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _number(score) -> float | None:
    try:
        return float(score)
    except (TypeError, ValueError):
        return None


def record_scores(rows: list[dict], path: Path) -> dict[str, dict]:
    """Merge the status and scores of listed submissions (kaggle_api.submissions) into `path`, by ref."""
    scores = json.loads(path.read_text()) if path.is_file() else {}
    for r in rows:
        scores[str(r["ref"])] = {
            "status": r["status"],
            "public_score": _number(r["public_score"]),
            "private_score": _number(r["private_score"]),
        }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(scores, indent=1, sort_keys=True) + "\n")
    return scores


def with_score(receipt: dict, scores_path: Path) -> dict:
    """The receipt with the recorded status and scores of its upload (none before Kaggle scores it)."""
    scores = json.loads(scores_path.read_text()) if scores_path.is_file() else {}
    if "ref" not in receipt:
        return receipt
    known = scores.get(str(receipt["ref"]), {"status": "PENDING", "public_score": None, "private_score": None})
    return {**receipt, **known}
