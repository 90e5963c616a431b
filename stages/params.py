"""Check every section of params.yaml whichever stage an experiment runs: `dvc repro params`.

The stage declares every param, so DVC runs it whenever one changes, and every other stage comes after it:
`dvc exp run -S predict.batch_size=0 evaluate` stops here with one line instead of ending as a successful
experiment that holds a value no stage has read. Its out never changes, so it never reruns anything itself.
"""

from pathlib import Path

from pipeline import params
from pipeline.errors import run_stage

OUT = Path("data/params.ok")


def main() -> None:
    params.load()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("every section of params.yaml is valid\n")


if __name__ == "__main__":
    run_stage(main)
