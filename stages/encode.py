"""Run-length encode the predictions into the submission: `dvc repro encode`.

Up-samples each probability map to its image's size, applies the rules evaluate chose on the validation images
(a threshold; where the competition rewards it, a minimum object area per class), encodes the masks in the
competition's dialect on every core, and writes submissions/submission.csv.gz in the sample submission's rows and
order, checked before it replaces the previous file.
"""

from pipeline import params
from pipeline.competitions import competition_class
from pipeline.errors import UserError, run_stage
from pipeline.masks import recipe
from pipeline.masks.postprocess import Rule
from pipeline.paths import PREDICTIONS, RAW, RECIPE, SUBMISSION
from pipeline.prediction import shards
from pipeline.provenance import file_hash
from pipeline.submission import encode


def main() -> None:
    used = params.load("download", "encode")
    e, comp = used["encode"], competition_class(used["download"].competition)
    chosen = recipe.read(RECIPE)
    if e.threshold == "best" and chosen is None:
        raise UserError(f"{RECIPE} is missing; run `dvc repro evaluate`, or set encode.threshold to a number")
    channels = shards.check_manifest(PREDICTIONS)["classes"]
    rules = recipe.rules(chosen, channels) if e.threshold == "best" else [Rule(e.threshold)] * channels
    stats = encode.write(PREDICTIONS, comp, comp.submission_format(RAW), rules, SUBMISSION, e.jobs)
    params.check_unchanged(used)
    if stats["rows"] == 0:  # a local set without test images: a header alone is no submission
        print(
            f"{SUBMISSION}: no rows: {RAW} holds no test images, so there is nothing to submit (with "
            f"download.source local, download.local.test_images names the folder of test images)"
        )
        return
    sha = file_hash(SUBMISSION)[:12]
    print(
        f"{SUBMISSION}: {stats['rows']} rows, {stats['bytes'] / 1e6:.1f} MB, threshold {_described(rules)}, "
        f"sha256 {sha} (to upload this file: dvc exp run -S submit.sha256={sha} submit)"
    )


def _described(rules: list[Rule]) -> str:
    text = [
        f"{r.threshold:.3f}"
        + (f" min area {r.min_area}" if r.min_area else "")
        + (f" only with {r.top_pixels}+ px over {r.top:.2f}" if r.top_pixels else "")
        for r in rules
    ]
    return text[0] if len(set(text)) == 1 else "per class " + ", ".join(text)


if __name__ == "__main__":
    run_stage(main)
