"""Run-length encode the predictions into the submission: `dvc repro encode`.

Up-samples each probability map to the original size, thresholds it (by default at the threshold
evaluate found best on the validation images), encodes it in Carvana's order on every core, and
writes submissions/encode.csv.gz, checked against sample_submission.csv.
"""

import json
from pathlib import Path

from pipeline import params
from pipeline.download import competition
from pipeline.errors import run_stage
from pipeline.provenance import file_hash
from pipeline.submission import encode

RAW, PREDICTIONS, EVALUATION = Path("data/raw"), Path("data/predictions"), Path("reports/evaluate/metrics.json")
OUT = Path("submissions/encode.csv.gz")


def main() -> None:
    e = params.load("encode")["encode"]
    threshold = e.threshold if e.threshold != "best" else json.loads(EVALUATION.read_text())["threshold"]
    names = competition.read_csv(RAW / competition.SAMPLE_SUBMISSION_CSV, ("img", "rle_mask"))["img"].tolist()
    stats = encode.write(PREDICTIONS, names, OUT, threshold, e.jobs)
    sha = file_hash(OUT)[:12]
    print(
        f"{OUT}: {stats['rows']} rows, {stats['bytes'] / 1e6:.1f} MB, threshold {threshold:.3f}, sha256 {sha} "
        f"(to upload this file: dvc exp run -S submit.sha256={sha} submit)"
    )


if __name__ == "__main__":
    run_stage(main)
