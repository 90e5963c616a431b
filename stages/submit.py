"""Submit submissions/submission.csv.gz to Kaggle when it is the file submit.sha256 names: `dvc repro submit`.

Off by default. An upload names its file: `dvc exp run -S submit.sha256=<what encode printed>` leaves
that value in params.yaml, and a later run that makes another file uploads nothing, so no unrelated
change can spend the daily allowance. Either way the stage writes submissions/receipt.json saying what
it did. Every upload is also appended to submissions/history.jsonl, which is not a DVC out: no rerun may
delete the record that keeps a file from being submitted twice. After an upload the stage waits up to
submit.wait seconds for the public score and records it (submissions/scores.json, by ref) in the receipt, a
DVC metric; `kseg submissions --wait` records a score that came later.
"""

import json

from pipeline import params
from pipeline.errors import run_stage
from pipeline.kaggle_api import submissions
from pipeline.paths import HISTORY, METRICS, RECEIPT, SCORES, SUBMISSION
from pipeline.provenance import file_hash
from pipeline.submission import upload


def main() -> None:
    p = params.load("download", "split", "train", "predict", "submit")
    s, t = p["submit"], p["train"]
    sha = file_hash(SUBMISSION)
    if not s.sha256 or not sha.startswith(s.sha256):
        reason = (
            "submit.sha256 is empty: nothing to upload"
            if not s.sha256
            else f"submit.sha256 names {s.sha256}, but {SUBMISSION} is now {sha[:12]}: nothing uploaded"
        )
        receipt = {"submitted": False, "reason": reason, "file": str(SUBMISSION), "sha256": sha}
    else:
        evaluation = json.loads(METRICS.read_text())
        key = {
            "arch": t.model.arch,
            "width": t.model.base_channels,
            "scale": t.scale,
            "epochs": t.epochs,
            "folds": p["split"].fold,
            "tta": p["predict"].tta,
            "val_dice": round(evaluation["dice"], 5),
        }
        receipt = upload.submit_once(p["download"].competition, SUBMISSION, s.message, key, HISTORY, s.force)
        if receipt["submitted"] and s.wait:
            print(f"waiting up to {s.wait} s for Kaggle's score of ref {receipt['ref']} ...")
            rows = submissions.wait_for_score(p["download"].competition, receipt["ref"], s.wait, min(10.0, s.wait / 4))
            upload.record_scores(rows, SCORES)
        receipt = upload.with_score(receipt, SCORES)
    params.check_unchanged(p)
    RECEIPT.write_text(json.dumps(receipt, indent=2) + "\n")
    said = f"submitted as ref {receipt['ref']}" if receipt["submitted"] else receipt["reason"]
    if receipt.get("public_score") is not None:
        said += f"; public score {receipt['public_score']}"
    elif "ref" in receipt:
        said += "; not scored yet: `kseg submissions --wait` records the score"
    print(f"{RECEIPT}: {said}")


if __name__ == "__main__":
    run_stage(main)
