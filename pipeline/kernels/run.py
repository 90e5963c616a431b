"""What a code competition's kernel runs on Kaggle, offline, once the bundle's wheels are installed: the test images
that the competition's sample_submission.csv lists, predicted and encoded into submission.csv by the same functions
as the predict and encode stages (`predict.predict_test_set`, `blend.blend_shards`, `recipe.rules`, `encode.write`),
with the models, TTA, precision and rules that the bundle's recipe (bundle.json) recorded.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from pipeline import runtime
from pipeline.competitions import competition_class
from pipeline.kernels.files import RECIPE
from pipeline.masks import recipe
from pipeline.prediction import blend, predict, shards
from pipeline.prediction.predictor import load_predictor
from pipeline.submission import encode


def run(bundle: Path, competition: Path, out: Path, work: Path | None = None) -> dict:
    """Predict the test set of the competition mounted at `competition` with the bundle at `bundle` and write the
    submission `out` (plain CSV, as code competitions score it); the work (shards) goes to `work`, beside `out` by
    default. Returns {'images', 'rows', 'seconds'}."""
    started = time.perf_counter()
    spec = json.loads((Path(bundle) / RECIPE).read_text())
    comp = competition_class(spec["competition"])
    work = Path(work or Path(out).parent / "kseg-work")
    source, fmt = comp.kernel_inputs(Path(competition), work / "inputs")
    names = list(fmt.images)
    print(f"{spec['competition']}: {len(names)} test images listed, read from {source.path}", file=sys.stderr)
    parts = []
    for k, member in enumerate(spec["members"]):
        rt = runtime.for_inference(member["amp"])
        predictor = load_predictor([Path(bundle) / m for m in member["models"]], rt.device, rt.memory_format)
        parts.append(work / f"member{k}")
        predict.predict_test_set(
            predictor, source, names, parts[-1], competition=spec["competition"], rt=rt, tta=member["tta"],
            shard_size=spec["shard_size"], batch_size=spec["batch_size"], workers=spec["workers"],
        )  # fmt: skip
    if len(parts) == 1:
        maps = parts[0]
    else:
        maps = work / "blend"
        blend.blend_shards(parts, [m["weight"] for m in spec["members"]], maps, spec["shard_size"])
    rules = recipe.rules(spec["recipe"], shards.check_manifest(maps)["classes"])
    written = encode.write(maps, comp, fmt, rules, Path(out), jobs=-1)
    seconds = time.perf_counter() - started
    print(f"{out}: {written['rows']} rows for {len(names)} images in {seconds:.0f} s", file=sys.stderr)
    return {"images": len(names), "rows": written["rows"], "seconds": seconds}
