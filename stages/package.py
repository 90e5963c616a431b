"""The kernel bundle of a code competition: `dvc repro package` -> data/package/ (dataset/, kernel/, SHA256).

Kaggle takes no CSV in a code competition (Severstal): it reruns a kernel offline on the hidden test set. The bundle
is that kernel and the dataset it mounts: the models predict used, the recipe, this project's wheel and the wheels
that Kaggle's image lacks. It is tried offline, in a clean environment, on test images laid out as Kaggle mounts
them, and checked against Kaggle's size and time limits before the submit stage pushes it. A competition that takes
files (Carvana, unless submit.via is kernel) gets no bundle: the stage says so and leaves the folder empty.
"""

import json
import shutil
import tempfile
from pathlib import Path

from pipeline import params, paths
from pipeline.competitions import competition_class
from pipeline.errors import UserError, run_stage

WHEELS, FETCHED = paths.CHECKPOINTS / "package" / "wheels", paths.CHECKPOINTS / "members"


def to_bundle(p: dict) -> tuple[list, dict]:
    """(the models predict ran, as bundle.Members; the rules encode applied), from evaluate's recipe and blend."""
    from pipeline import members
    from pipeline.kernels import bundle
    from pipeline.masks import recipe
    from pipeline.provenance import file_hash

    pr, e = p["predict"], p["encode"]
    if pr.backend != "torch":
        raise UserError("a kernel runs the torch checkpoints: set predict.backend torch (evaluate then chooses again)")
    chosen = recipe.read(paths.RECIPE)
    if chosen is None:
        raise UserError(f"{paths.RECIPE} is missing: run `dvc repro evaluate`")
    spec = [m for m in json.loads(paths.BLEND.read_text())["members"] if m["weight"] > 0]
    if spec:
        found = [
            bundle.Member(
                m["name"],
                m["weight"],
                m["tta"],
                m["amp"],
                sorted(members.fetch(m, FETCHED).glob(str(paths.model("*")))),
            )
            for m in spec
        ]
    else:
        stale = [
            path
            for path, sha in chosen["checkpoints"].items()
            if not Path(path).is_file() or file_hash(Path(path)) != sha
        ]
        if stale:
            raise UserError(f"{paths.RECIPE} was chosen for other models than {stale[0]}: run `dvc repro evaluate`")
        found = [bundle.Member("models", 1.0, chosen["tta"], chosen["amp"], [Path(m) for m in chosen["checkpoints"]])]
    rules = (
        {k: chosen[k] for k in ("threshold", "rules") if k in chosen}
        if e.threshold == "best"
        else {"threshold": e.threshold}
    )
    return found, rules


def main() -> None:
    p = params.load("download", "split", "predict", "encode", "package", "submit")
    d = p["download"]
    comp = competition_class(d.competition, d.source)
    way = comp.submission_way if p["submit"].via == "auto" else p["submit"].via
    shutil.rmtree(paths.PACKAGE, ignore_errors=True)
    paths.PACKAGE.mkdir(parents=True)
    if way == "file":
        (paths.PACKAGE / "NONE").write_text(
            f"{comp.slug or d.competition} takes a file: no kernel (submit.via {p['submit'].via})\n"
        )
        params.check_unchanged(p)
        print(f"{paths.PACKAGE}: no kernel bundle: {d.competition} takes a file (submit.via kernel makes one)")
        return
    build(p, comp)


def build(p: dict, comp) -> None:
    """The bundle, tried offline and checked against Kaggle's limits. Imported here, not above: a competition that
    takes a file (the demo's) needs none of torch, the kernels or the budget, which take seconds to import."""
    from pipeline import budget
    from pipeline.competitions import open_competition
    from pipeline.kernels import bundle, files
    from pipeline.masks import recipe
    from pipeline.prediction.predictor import load_predictor
    from pipeline.provenance import ROOT

    d, pr, pk = p["download"], p["predict"], p["package"]
    found, rules = to_bundle(p)
    written = {"shard_size": pr.shard_size, "batch_size": pr.batch_size, "workers": pr.workers}
    bundle.write(paths.PACKAGE, comp, found, rules, written, pk, ROOT, WHEELS)
    total = bundle.check_size(paths.PACKAGE, pk.max_gb)

    opened = open_competition(paths.RAW, d.competition, d.hq)
    fmt = bundle.subset(opened.submission(), pk.check_images)
    with tempfile.TemporaryDirectory(prefix="kseg-package-") as work:
        images = {name: opened.read_test(name) for name in fmt.images}
        _, seconds, offline = bundle.try_offline(paths.PACKAGE, comp, fmt, images, Path(work))
    predictors = [(load_predictor(m.models), m.tta) for m in found]
    cost = budget.kernel_cost(
        comp, budget.competition_data(opened), lambda x: [pred(x, tta) for pred, tta in predictors],
        predictors[0][0].pre, found[0].amp, recipe.rules(rules, predictors[0][0].classes),
    )  # fmt: skip
    estimate = bundle.check_time(cost, comp.kernel_limits, pk.gpu)
    sha = files.sha256(paths.PACKAGE)
    (paths.PACKAGE / "SHA256").write_text(sha + "\n")
    params.check_unchanged(p)
    network = "without a network" if offline else "with the network (no namespace here)"
    print(
        f"{paths.PACKAGE}: a kernel bundle of {total / 1e6:.1f} MB, tried on {len(fmt.images)} test images in a clean "
        f"environment {network} ({seconds:.0f} s); on Kaggle's hidden test set: {estimate}; sha256 {sha[:12]} (to "
        f"submit it: dvc exp run -S submit.sha256={sha[:12]} submit)"
    )


if __name__ == "__main__":
    run_stage(main)
