"""Submitting a kernel bundle to a code competition: the dataset created or versioned and processed, the kernel
pushed and run, its log shown when it fails, then the version submitted by reference, once.

Every step is recorded (`state`: the bundle's hash, the dataset version uploaded, the kernel version pushed) before
the next one, so that a run interrupted at any point resumes where it stopped: it never uploads the same bundle twice
nor pushes a duplicate version. The ids in the metadata name the owner: the params' (package.owner), else the
account of the credentials; a copy of the bundle with those ids is what goes up (hard links: no second copy of the
weights).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from tqdm import tqdm

from pipeline import kaggle_api
from pipeline.errors import UserError
from pipeline.kaggle_api import KaggleError, datasets, kernels, submissions
from pipeline.kernels import files
from pipeline.submission import upload

OUTPUT = "submission.csv"  # what a code competition scores: the kernel's /kaggle/working/submission.csv


class KernelFailed(KaggleError):
    """The kernel ran on Kaggle and failed: its version is spent, the next submit pushes the bundle again."""


def staged(package: Path, owner: str, where: Path) -> tuple[Path, Path, str, str]:
    """A copy of the bundle whose metadata names `owner`: (dataset folder, kernel folder, dataset ref, kernel ref)."""
    shutil.rmtree(where, ignore_errors=True)
    for part in (files.DATASET, files.KERNEL):
        shutil.copytree(package / part, where / part, copy_function=files.link)
    dataset_meta = json.loads((where / files.DATASET / "dataset-metadata.json").read_text())
    kernel_meta = json.loads((where / files.KERNEL / "kernel-metadata.json").read_text())
    dataset_ref = f"{owner}/{dataset_meta['id'].split('/', 1)[1]}"
    kernel_ref = f"{owner}/{kernel_meta['id'].split('/', 1)[1]}"
    dataset_meta["id"] = dataset_ref
    kernel_meta.update(id=kernel_ref, dataset_sources=[dataset_ref])
    for path, meta in ((where / files.DATASET / "dataset-metadata.json", dataset_meta),
                       (where / files.KERNEL / "kernel-metadata.json", kernel_meta)):  # fmt: skip
        path.unlink()  # a hard link to the bundle's: write a file of its own
        path.write_text(json.dumps(meta, indent=2) + "\n")
    return where / files.DATASET, where / files.KERNEL, dataset_ref, kernel_ref


def _save(state_path: Path, state: dict) -> None:
    part = state_path.with_name(state_path.name + ".part")
    part.write_text(json.dumps(state, indent=1) + "\n")
    os.replace(part, state_path)


def owner_of(wanted: str) -> str:
    """The account the bundle goes up under: package.owner, which must be the credentials' own."""
    user = kaggle_api.username(kaggle_api.connect())
    if wanted and user and wanted != user:
        raise KaggleError(
            f"package.owner is {wanted}, but the Kaggle credentials are {user}'s: a dataset and a kernel can only be "
            f"pushed by their owner; set package.owner to {user} (or empty)"
        )
    return wanted or user


def run_kernel(kernel_ref: str, version: int, seconds: float, poll: float, logs: Path) -> None:
    """Wait for Kaggle's run of the kernel with a progress line; on failure, its log's last lines and the fix."""
    deadline = time.monotonic() + seconds
    with tqdm(desc=f"kernel {kernel_ref} v{version}", bar_format="{desc}: {elapsed} {postfix}") as bar:
        while True:
            state, failure = kernels.status(kernel_ref)
            bar.set_postfix_str(state.lower())
            if state in kernels.DONE:
                break
            if time.monotonic() > deadline:
                raise KaggleError(
                    f"the kernel {kernel_ref} version {version} is still {state.lower()} after {seconds:.0f} s; run "
                    f"the same command again later: it waits for this version and does not push another"
                )
            time.sleep(poll)
    if state != "COMPLETE":
        log = kernels.log(kernel_ref, logs)
        tail = "\n".join(log.strip().splitlines()[-12:]) or failure or "(no log)"
        timed_out = "timeout" in (failure + log).lower() or "exceeded" in (failure + log).lower()
        fix = (
            "It ran out of time: predict with fewer folds, a smaller TTA set or scale (`dvc repro package` estimates "
            "the run time)"
            if timed_out
            else files.fix_for(tail)
        )
        raise KaggleError(
            f"the kernel {kernel_ref} version {version} failed on Kaggle ({failure or state}):\n{tail}\n{fix}"
        )


def submit(
    competition: str,
    package: Path,
    sha: str,
    note: str,
    key_params: dict,
    owner: str,
    history: Path,
    state_path: Path,
    work: Path,
    force: bool,
    wait: float,
    poll: float = 10.0,
) -> dict:
    """Submit the bundle in `package` (its hash `sha`) to the code competition, resuming an interrupted run; returns
    the receipt."""
    receipt = {"competition": competition, "via": "kernel", "file": str(package), "sha256": sha, "time": upload.now()}
    state = json.loads(state_path.read_text()) if state_path.is_file() else {}
    if state.get("sha256") != sha:
        found = None if force else upload.earlier(competition, sha, history)
        if found is not None:
            return upload.already(receipt, found, "kernel bundle")
        state = {"sha256": sha}
    owner = owner_of(owner)
    dataset_dir, kernel_dir, dataset_ref, kernel_ref = staged(package, owner, work / sha[:12])
    state.update(dataset=dataset_ref, kernel=kernel_ref)
    if not state.get("dataset_uploaded"):
        existing = datasets.status(dataset_ref)
        if existing is None:
            print(f"creating the dataset {dataset_ref} ({files.size(package) / 1e6:.1f} MB) ...")
            datasets.create(dataset_dir)
        else:  # a version uploaded while the previous one is processing is refused: wait for it first
            datasets.wait_ready(dataset_ref, wait, poll)
            print(f"uploading a new version of the dataset {dataset_ref} ({files.size(package) / 1e6:.1f} MB) ...")
            datasets.version(dataset_dir, f"kernel bundle sha256:{sha[:12]}")
        state["dataset_uploaded"] = True
        _save(state_path, state)
    datasets.wait_ready(dataset_ref, wait, poll)  # else the kernel would mount the previous weights
    if not state.get("kernel_version"):
        pushed = kernels.push(kernel_dir)
        state.update(kernel_version=pushed["version"])
        _save(state_path, state)
        print(f"pushed the kernel {kernel_ref} as version {pushed['version']}: Kaggle runs it now")
    version = state["kernel_version"]
    try:
        run_kernel(kernel_ref, version, wait, poll, work / "logs")
    except KernelFailed:
        state.pop("kernel_version")  # that version failed: the next run pushes the bundle again
        _save(state_path, state)
        raise
    message = upload.description(note, sha, key_params)
    answer = submissions.submit_code(competition, kernel_ref, version, OUTPUT, message)
    receipt = {**receipt, "submitted": True, "ref": answer["ref"], "message": message, "kaggle": answer["message"],
               "dataset": dataset_ref, "kernel": kernel_ref, "kernel_version": version}  # fmt: skip
    upload.record(history, receipt)
    state_path.unlink(missing_ok=True)
    return receipt


def refuse_file(competition: str) -> UserError:
    """A CSV for a code competition, refused before any request."""
    return UserError(
        f"{competition} is a code competition: Kaggle takes no uploaded file there, only a kernel it reruns on the "
        f"hidden test set; set submit.via to kernel (or auto), and submit.sha256 to the bundle's hash that the "
        f"package stage prints"
    )
