"""Kaggle datasets: the bundle of a kernel (weights, recipe, wheels) is one, created once and versioned after.

Kaggle processes an upload before a kernel can mount it, and refuses a new version while the last one is still
processing (Kaggle/kagglehub #181): `wait_ready` polls the dataset's status before both.
"""

from __future__ import annotations

import time
from pathlib import Path

from tqdm import tqdm

from pipeline.kaggle_api import KaggleError, call, connect

READY, FAILED = "ready", "failed"


def status(ref: str) -> str | None:
    """The processing status of dataset `owner/slug` (ready, failed, or a step of processing); None when Kaggle
    has no such dataset."""
    import requests

    api = connect()

    def read():
        try:
            return api.dataset_status(ref)
        except requests.HTTPError as err:
            if getattr(err.response, "status_code", None) == 404:
                return None
            raise

    return call(read, f"dataset {ref}", "read the dataset's status")


def create(folder: Path) -> str:
    """Create the dataset that `folder`'s dataset-metadata.json names, its sub-folders uploaded as zips (Kaggle
    unpacks them where the kernel mounts the dataset); returns its ref. A version of an existing one: `version`."""
    api = connect()
    response = call(
        lambda: api.dataset_create_new(str(folder), public=False, quiet=True, dir_mode="zip"),
        f"dataset {folder.name}",
        "create the bundle's dataset",
        delays=(),
    )
    if getattr(response, "error", None):
        raise KaggleError(f"Kaggle did not create the dataset of {folder}: {response.error}")
    return str(getattr(response, "ref", "") or "")


def version(folder: Path, notes: str) -> str:
    """A new version of the dataset that `folder`'s dataset-metadata.json names, with these notes."""
    api = connect()
    response = call(
        lambda: api.dataset_create_version(str(folder), notes, quiet=True, dir_mode="zip"),
        f"dataset {folder.name}",
        "upload a new version of the bundle's dataset",
        delays=(),
    )
    if getattr(response, "error", None):
        raise KaggleError(f"Kaggle did not take the new version of the dataset of {folder}: {response.error}")
    return str(getattr(response, "ref", "") or "")


def wait_ready(ref: str, seconds: float, poll: float) -> None:
    """Wait until Kaggle has processed dataset `ref`, with a progress line; KaggleError when processing failed or
    takes longer than `seconds`."""
    deadline = time.monotonic() + seconds
    with tqdm(desc=f"Kaggle processes {ref}", bar_format="{desc}: {elapsed} {postfix}") as bar:
        while True:
            now = status(ref)
            bar.set_postfix_str(now or "not there yet")
            if now == READY:
                return
            if now == FAILED:
                raise KaggleError(
                    f"Kaggle failed to process the dataset {ref}: look at its page on kaggle.com, then run the submit "
                    f"stage again (it uploads a new version)"
                )
            if time.monotonic() > deadline:
                raise KaggleError(
                    f"Kaggle is still processing the dataset {ref} after {seconds:.0f} s ({now}); run the same command "
                    f"again later: it waits again, and pushes the kernel once the dataset is ready"
                )
            time.sleep(poll)
