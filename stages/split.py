"""Assign train images to folds, grouped as the plan says (names <prefix>_<NN>: by prefix, Carvana's car; else by
image): `dvc repro split` -> data/split.csv."""

from pipeline import params
from pipeline.competitions import open_competition
from pipeline.data import split
from pipeline.errors import run_stage
from pipeline.paths import PLAN, RAW, SPLIT
from pipeline.planning import resolve


def main() -> None:
    p = params.load("download", "split")
    s, d = resolve.resolved(p, PLAN, "split")["split"], p["download"]
    comp = open_competition(RAW, d.competition, d.hq)
    table = split.split_competition(comp, folds=s.folds, seed=s.seed, stratify=s.stratify, group=s.group)
    params.check_unchanged(p)
    table.to_csv(SPLIT, index=False, float_format="%.6f")
    sizes = table.groupby("fold")["group"].nunique().tolist()
    label = split.group_label(comp, s.group)
    print(f"{SPLIT}: {len(table)} images of {table['group'].nunique()} {label}s in {s.folds} folds ({sizes} each)")


if __name__ == "__main__":
    run_stage(main)
