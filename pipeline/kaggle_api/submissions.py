"""Submissions: a file uploaded to a competition, a kernel version submitted to a code competition, and the
account's submissions with their scores."""

from __future__ import annotations

import time
from pathlib import Path

from pipeline.kaggle_api import KaggleError, call, connect


def submit(competition: str, path: Path, message: str) -> dict:
    """Upload a submission file; returns {'ref', 'message'} from Kaggle."""
    api = connect()
    response = call(
        lambda: api.competition_submit(str(path), message, competition, quiet=True),
        competition,
        f"submit {path.name}",
        delays=(),
    )
    if not getattr(response, "ref", None):
        raise KaggleError(f"Kaggle did not accept {path}: {getattr(response, 'message', '') or 'upload failed'}")
    return {"ref": response.ref, "message": response.message}


def submit_code(competition: str, kernel: str, version: int, file_name: str, message: str) -> dict:
    """Submit the output `file_name` of version `version` of the kernel `owner/slug` to a code competition: Kaggle
    reruns that version on the hidden test set and scores the file it writes; returns {'ref', 'message'}."""
    api = connect()
    response = call(
        lambda: api.competition_submit_code(file_name, message, competition, kernel=kernel, kernel_version=version),
        competition,
        f"submit kernel {kernel} version {version}",
        delays=(),
    )
    if not getattr(response, "ref", None):
        raise KaggleError(
            f"Kaggle did not accept kernel {kernel} version {version}: "
            f"{getattr(response, 'message', '') or 'no reference came back'}"
        )
    return {"ref": response.ref, "message": response.message}


def submissions(competition: str) -> list[dict]:
    """The account's submissions to a competition, newest first, as plain dicts."""
    api = connect()
    rows = call(lambda: api.competition_submissions(competition, page_size=100), competition, "list submissions")
    out = []
    for s in rows or []:
        status = getattr(s.status, "name", str(s.status)).replace("SUBMISSION_STATUS_", "")
        out.append(
            {
                "ref": s.ref,
                "file": s.file_name,
                "date": s.date.isoformat() if hasattr(s.date, "isoformat") else str(s.date or ""),
                "description": s.description or "",
                "status": status,
                "public_score": s.public_score or "",
                "private_score": s.private_score or "",
            }
        )
    return out


def wait_for_score(competition: str, ref, seconds: float, poll: float) -> list[dict]:
    """The competition's submissions once `ref` is scored (or `seconds` have passed)."""
    deadline = time.monotonic() + seconds
    rows = submissions(competition)
    while any(str(r["ref"]) == str(ref) and r["status"] == "PENDING" for r in rows) and time.monotonic() < deadline:
        time.sleep(poll)
        rows = submissions(competition)
    return rows
