"""Run-length encode the predictions into the submission: `dvc repro encode`.

Up-samples each probability map to the original size, thresholds it (by default at the threshold
evaluate found best on the validation images), encodes it in Carvana's order on every core, and
writes submissions/submission.csv.gz, checked against sample_submission.csv.
"""

from pathlib import Path

from pipeline import params
from pipeline.download import competition
from pipeline.errors import UserError, run_stage
from pipeline.prediction import recipe
from pipeline.provenance import file_hash
from pipeline.submission import encode

RAW, PREDICTIONS, RECIPE = Path("data/raw"), Path("data/predictions"), Path("reports/evaluate/predictor.json")
OUT = Path("submissions/submission.csv.gz")


def main() -> None:
    used = params.load("encode")
    e = used["encode"]
    chosen = recipe.read(RECIPE)
    if e.threshold == "best" and chosen is None:
        raise UserError(f"{RECIPE} is missing; run `dvc repro evaluate`, or set encode.threshold to a number")
    threshold = e.threshold if e.threshold != "best" else chosen["threshold"]
    names = competition.read_csv(RAW / competition.SAMPLE_SUBMISSION_CSV, ("img", "rle_mask"))["img"].tolist()
    stats = encode.write(PREDICTIONS, names, OUT, threshold, e.jobs)
    params.check_unchanged(used)
    sha = file_hash(OUT)[:12]
    print(
        f"{OUT}: {stats['rows']} rows, {stats['bytes'] / 1e6:.1f} MB, threshold {threshold:.3f}, sha256 {sha} "
        f"(to upload this file: dvc exp run -S submit.sha256={sha} submit)"
    )


if __name__ == "__main__":
    run_stage(main)
