"""Plan every `auto` param from the data: `dvc repro plan` -> data/plan/<stage>.json, reports/plan/.

A fingerprint of the training data (classes, their emptiness, sizes and thinness, what each input scale keeps of
them, the images' directions) and the speed measured here choose the input scale, width, batch, learning rate,
epochs for train.minutes, loss weights, flips, colour jitter, TTA set, threshold range and empty-mask rule, each with
its reason (pipeline.planning.rules). A value set in params.yaml wins and is marked as the user's. `kseg plan` prints
the same plan without writing it.
"""

from pipeline import params, paths
from pipeline.competitions import open_competition
from pipeline.errors import run_stage
from pipeline.planning import fingerprint, plan


def main() -> None:
    p = params.load()
    d = p["download"]
    comp = open_competition(paths.RAW, d.competition, d.hq)
    fp = fingerprint.compute(comp, d.competition)
    chosen = plan.make(fp, p, plan.Speed(comp, p))
    params.check_unchanged(p)
    plan.write(chosen, fp, paths.PLAN, paths.PLAN_REPORTS)
    print(plan.describe(chosen))


if __name__ == "__main__":
    run_stage(main)
