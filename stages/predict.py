"""Predict the test set with the fold models: `dvc repro predict` -> data/predictions/.

Shards of uint8 probability maps at the model size, in sample_submission order, made in
checkpoints/predict/ (which DVC never restores or deletes, so an interrupted `dvc repro` or
`dvc exp run` continues with the first unfinished shard) and hard-linked into the out once all are
done. predict.backend onnxruntime exports the fold models to checkpoints/predict/onnx/ and runs them
with ONNX Runtime. With predict.nproc > 1 the stage relaunches itself under torchrun and the
processes share the shards (one GPU each).

With a blend (reports/evaluate/blend.json, from `blend.members`), every member's fold models predict into their
own shards (checkpoints/predict/members/, with the member's TTA and precision), and the blend's shards are their
weighted mean: a change of weights recomputes only that mean.
"""

import json
from pathlib import Path

from pipeline import budget, members, params, paths, runtime
from pipeline.competitions import open_competition
from pipeline.errors import run_stage
from pipeline.paths import BLEND, CHECKPOINTS, PLAN, PREDICTIONS, RAW
from pipeline.planning import resolve
from pipeline.prediction import blend, onnx_export, predict, shards
from pipeline.prediction.predictor import load_predictor

WORK, FETCHED = CHECKPOINTS / "predict", CHECKPOINTS / "members"


def predict_into(work: Path, models: list[Path], comp, slug: str, pr, tta: str, amp: bool) -> int:
    """Every missing shard of `work` from these fold models, under this TTA and precision (a blend member's own),
    after the budget says what it costs and the disk has room; the shards written by this process. `slug`
    (download.competition) is recorded with the test set for a pseudo-label round to check."""
    pr = params.replace(pr, tta=tta, amp=amp)  # what the budget counts, too
    rt = runtime.for_inference(amp)
    if pr.backend == "onnxruntime":
        exported = [work / "onnx" / f"{m.parent.name}.onnx" for m in models]
        for onnx_path, ckpt_path in zip(exported, models, strict=True):
            if rt.rank == 0 and not onnx_export.is_current(onnx_path, ckpt_path):
                onnx_export.export(ckpt_path, onnx_path)
        runtime.barrier(rt.world)
        models = exported
    predictor = load_predictor(models, rt.device, rt.memory_format)
    names = comp.test_names

    def budget_first(manifest: dict) -> None:
        batch = (min(pr.batch_size, 2), predictor.pre.channels, *predictor.pre.size)
        per_image = budget.forward_seconds(lambda x: predictor(x, tta, rt.autocast), rt, batch)
        cost = budget.predict_cost(budget.competition_data(comp), predictor.pre, len(models), pr, per_image, rt)
        print(cost)
        todo = sum(min(pr.shard_size, len(names) - k * pr.shard_size) for k in shards.missing(work, manifest))
        budget.ensure_room(work, cost.disk * todo // max(1, len(names)), "the predictions")

    return predict.predict_test_set(
        predictor, comp.test, names, work, competition=slug, rt=rt, tta=tta, shard_size=pr.shard_size,
        batch_size=pr.batch_size, workers=pr.workers, settings={"backend": pr.backend}, before=budget_first,
    )  # fmt: skip


def main() -> None:
    given = params.load("download", "split", "predict")
    p = resolve.resolved(given, PLAN, "predict")  # the TTA set planned
    pr = p["predict"]
    status = runtime.relaunch(__spec__.name, pr.nproc)
    if status is not None:
        raise SystemExit(status)
    rt = runtime.for_inference(pr.mixed_precision)

    slug = p["download"].competition
    comp = open_competition(RAW, slug, p["download"].hq)
    names = comp.test_names
    spec = [m for m in json.loads(BLEND.read_text())["members"] if m["weight"] > 0]
    if not spec:
        models = [paths.model(k) for k in p["split"].validation_folds()]
        done = predict_into(WORK, models, comp, slug, pr, pr.tta, pr.mixed_precision)
        what = f"{len(models)} model(s), TTA {pr.tta}"
    else:
        parts = []
        for m in spec:
            folder = members.fetch(m, FETCHED) if rt.rank == 0 else FETCHED / m["rev"]
            runtime.barrier(rt.world)
            work = WORK / "members" / m["rev"][:12]
            predict_into(work, sorted(folder.glob(str(paths.model("*")))), comp, slug, pr, m["tta"], m["amp"])
            parts.append(work)
        done = blend.blend_shards(parts, [m["weight"] for m in spec], WORK, pr.shard_size) if rt.rank == 0 else 0
        what = "a blend of " + ", ".join(f"{m['name']} x {m['weight']:.2f}" for m in spec)
    if rt.rank == 0:
        params.check_unchanged(given)
        shards.publish(WORK, PREDICTIONS)
        manifest = shards.check_manifest(WORK)
        shown = f"{manifest['shards']} shards ({done} written now by process 0, {what})"
        print(f"{PREDICTIONS}: {len(names)} images in {shown}")


if __name__ == "__main__":
    run_stage(main)
