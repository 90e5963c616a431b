"""Kaggle kernels: a folder with kernel-metadata.json and its script pushed as a new version (which Kaggle then
runs), its session's status, and its log and output files."""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.kaggle_api import KaggleError, call, connect

DONE = {"COMPLETE", "ERROR", "CANCEL_ACKNOWLEDGED"}  # a session's ends (KernelWorkerStatus names)


def push(folder: Path) -> dict:
    """Push the kernel of `folder` (Kaggle saves a version and runs it); {'ref', 'version', 'url'}."""
    api = connect()
    ref = json.loads((folder / "kernel-metadata.json").read_text())["id"]
    response = call(lambda: api.kernels_push(str(folder)), f"kernel {ref}", "push the kernel", delays=())
    if getattr(response, "error", None):
        raise KaggleError(f"Kaggle did not take the kernel {ref}: {response.error}")
    for field, what in (("invalid_dataset_sources", "dataset"), ("invalid_competition_sources", "competition")):
        bad = list(getattr(response, field, None) or [])
        if bad:
            raise KaggleError(
                f"Kaggle cannot mount the {what} {bad[0]} in the kernel {ref}: it does not exist or this account "
                f"cannot read it (for a competition: accept its rules on kaggle.com)"
            )
    return {"ref": ref, "version": int(response.version_number or 0), "url": response.url or ""}


def status(ref: str) -> tuple[str, str]:
    """(the kernel's session status: QUEUED, RUNNING, COMPLETE, ERROR, ...; Kaggle's failure message or "")."""
    api = connect()
    response = call(lambda: api.kernels_status(ref), f"kernel {ref}", "read the kernel's status")
    state = getattr(response.status, "name", str(response.status))
    return state, str(getattr(response, "failure_message", "") or "")


def log(ref: str, folder: Path) -> str:
    """The kernel's log as text (Kaggle writes it as a JSON list of stream entries); its output files go to `folder`
    too."""
    api = connect()
    folder.mkdir(parents=True, exist_ok=True)
    files, _ = call(lambda: api.kernels_output(ref, str(folder), force=True), f"kernel {ref}", "fetch the kernel's log")
    logs = [Path(f) for f in files if str(f).endswith(".log")]
    text = logs[0].read_text() if logs else ""
    try:
        return "".join(entry.get("data", "") for entry in json.loads(text))
    except (ValueError, TypeError, AttributeError):
        return text
