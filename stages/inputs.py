"""Check every param, and fingerprint the files that params name: `dvc repro inputs`, which DVC runs every time.

Every section of params.yaml is validated (and download.competition looked up) whichever stage an experiment runs:
`dvc exp run -S predict.batch_size=0 evaluate` stops here with one line instead of ending as a successful experiment
that holds a value no stage has read. Then the content of the files that `train.init_from`, a local
`train.model.encoder_weights` and `download.local.path` name goes to data/inputs/<stage>.json, a dependency of the
stage that reads them: replacing such a file reruns that stage and what follows; when nothing changed, nothing else
runs. The package stage's own outside input, the installed versions of the packages a kernel bundle takes from
this environment, goes to data/inputs/package.json.
"""

from pipeline import inputs, params
from pipeline.competitions import competition_class
from pipeline.errors import run_stage
from pipeline.kernels import wheels
from pipeline.paths import CHECKPOINTS, INPUTS

HASHES = CHECKPOINTS / "inputs/hashes.json"  # file hashes by size and time: outside DVC's outs, kept


def main() -> None:
    p = params.load()
    competition_class(p["download"].competition, p["download"].source)  # an unknown slug stops here, first
    cache = inputs.HashCache(HASHES)
    pk = p["package"]
    targets = [wheels.Target(v, pk.platform) for v in pk.python]
    bundled = {"package": {"wheels": wheels.bundled_versions(pk.preinstalled, pk.bundle, targets)}}
    changed = inputs.write(p, INPUTS, cache, more=bundled)
    cache.save()
    if changed:
        print(f"{INPUTS}: the files read by {', '.join(changed)} changed")


if __name__ == "__main__":
    run_stage(main)
