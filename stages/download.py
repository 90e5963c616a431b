"""Fetch the competition into data/raw: `dvc repro download`.

download.source picks the demo (rendered here), Kaggle (the API) or a local folder; see params.yaml.
"""

from pipeline import params
from pipeline.competitions import competition_class
from pipeline.download import sources
from pipeline.errors import run_stage
from pipeline.paths import DEMO_TRUTH, RAW


def main() -> None:
    used = params.load("download")
    p = used["download"]
    counts = sources.fetch(p, RAW, DEMO_TRUTH)
    params.check_unchanged(used)
    title = competition_class(p.competition, p.source).title
    print(f"{RAW}: {counts['train']} train images with masks, {counts['test']} test images ({p.source}; {title})")


if __name__ == "__main__":
    run_stage(main)
