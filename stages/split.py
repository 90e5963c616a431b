"""Assign train images to folds grouped by car: `dvc repro split` -> data/split.csv."""

from pathlib import Path

from pipeline import params
from pipeline.data import split
from pipeline.download import competition
from pipeline.errors import run_stage

RAW = Path("data/raw")
OUT = Path("data/split.csv")


def main() -> None:
    p = params.load("download", "split")
    s, hq = p["split"], p["download"].hq
    comp = competition.open_competition(RAW, hq)
    table = split.split_competition(comp, folds=s.folds, seed=s.seed, stratify=s.stratify, group=s.group)
    params.check_unchanged(p)
    table.to_csv(OUT, index=False, float_format="%.6f")
    sizes = table.groupby("fold")["car"].nunique().tolist()
    print(f"{OUT}: {len(table)} images of {table['car'].nunique()} {s.group}s in {s.folds} folds ({sizes} each)")


if __name__ == "__main__":
    run_stage(main)
