"""Submit to Kaggle what submit.sha256 names: `dvc repro submit`.

Off by default. A submission names what it submits: `dvc exp run -S submit.sha256=<what encode or package printed>`
leaves that value in params.yaml, and a later run that makes another file uploads nothing, so no unrelated change
can spend the daily allowance. A competition that takes files (Carvana) gets submissions/submission.csv.gz; a code
competition (Severstal; or any, with submit.via kernel) gets the kernel bundle of data/package: its dataset created
or versioned, the kernel pushed and run on Kaggle, and that version submitted, resuming where an interrupted run
stopped. Either way the stage writes submissions/receipt.json saying what it did. Every submission is also appended
to submissions/history.jsonl, which is not a DVC out: no rerun may delete the record that keeps a file or a bundle
from being submitted twice. After a submission the stage waits up to submit.wait seconds for the public score and
records it (submissions/scores.json, by ref) in the receipt, a DVC metric; `kseg submissions --wait` records a score
that came later.
"""

import json

from pipeline import params, paths
from pipeline.competitions import competition_class
from pipeline.errors import UserError, run_stage
from pipeline.kaggle_api import submissions
from pipeline.kernels import files
from pipeline.kernels import submit as kernel
from pipeline.planning import resolve
from pipeline.provenance import file_hash
from pipeline.submission import has_rows, upload

STATE = paths.SUBMISSIONS / "kernel-state.json"  # an unfinished kernel submission: resumed, never repeated
WORK = paths.CHECKPOINTS / "submit"


def main() -> None:
    given = params.load("download", "split", "train", "predict", "package", "submit")
    p = resolve.resolved(given, paths.PLAN, "train", "predict")  # the description names the values trained with
    s, t, d = p["submit"], p["train"], p["download"]
    way = competition_class(d.competition, d.source).submission_way if s.via == "auto" else s.via
    if way == "file" and competition_class(d.competition, d.source).submission_way == "kernel" and s.sha256:
        raise kernel.refuse_file(d.competition)
    what = paths.SUBMISSION if way == "file" else paths.PACKAGE
    sha = file_hash(what) if way == "file" else files.sha256(what)
    if not s.sha256 or not sha.startswith(s.sha256):
        reason = (
            "submit.sha256 is empty: nothing to upload"
            if not s.sha256
            else f"submit.sha256 names {s.sha256}, but {what} is now {sha[:12]}: nothing submitted"
        )
        receipt = {"submitted": False, "reason": reason, "file": str(what), "sha256": sha}
    else:
        if way == "file" and not has_rows(what):
            raise UserError(f"{what} has no rows (the data has no test images): nothing to submit, nothing sent")
        evaluation = json.loads(paths.METRICS.read_text())
        key = {
            "arch": t.model.arch,
            "width": t.model.base_channels,
            "scale": t.scale,
            "epochs": t.epochs,
            "folds": p["split"].fold,
            "tta": p["predict"].tta,
            "val_dice": round(evaluation["dice"], 5),
        }
        if way == "file":
            receipt = upload.submit_once(d.competition, what, s.message, key, paths.HISTORY, s.force)
        else:
            receipt = kernel.submit(
                d.competition, what, sha, s.message, key, p["package"].owner, paths.HISTORY, STATE, WORK, s.force,
                s.kernel_wait, poll=min(10.0, max(0.2, s.kernel_wait / 100)),
            )  # fmt: skip
        if receipt["submitted"] and s.wait:
            print(f"waiting up to {s.wait} s for Kaggle's score of ref {receipt['ref']} ...")
            rows = submissions.wait_for_score(d.competition, receipt["ref"], s.wait, min(10.0, s.wait / 4))
            upload.record_scores(rows, paths.SCORES)
        receipt = upload.with_score(receipt, paths.SCORES)
    params.check_unchanged(given)
    paths.RECEIPT.write_text(json.dumps(receipt, indent=2) + "\n")
    said = f"submitted as ref {receipt['ref']}" if receipt["submitted"] else receipt["reason"]
    if receipt.get("public_score") is not None:
        said += f"; public score {receipt['public_score']}"
    elif "ref" in receipt:
        said += "; not scored yet: `kseg submissions --wait` records the score"
    print(f"{paths.RECEIPT}: {said}")


if __name__ == "__main__":
    run_stage(main)
