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

from pipeline import budget, members, params, runtime
from pipeline.competitions import open_competition
from pipeline.errors import run_stage
from pipeline.prediction import blend, onnx_export, predict, shards
from pipeline.prediction.inference import tta_name
from pipeline.prediction.predictor import load_predictor

RAW, MODELS, OUT, WORK = Path("data/raw"), Path("models"), Path("data/predictions"), Path("checkpoints/predict")
BLEND, FETCHED = Path("reports/evaluate/blend.json"), Path("checkpoints/members")


def predict_into(work: Path, models: list[Path], comp, pr, tta: bool | str, amp: bool) -> int:
    """Every missing shard of `work` from these fold models, under this TTA and precision (a blend member's own);
    the shards written by this process."""
    pr = params.replace(pr, tta=tta, amp=amp)  # what the budget counts, too
    rt = runtime.for_inference(amp)
    names = comp.test_names
    if pr.backend == "onnxruntime":
        exported = [work / "onnx" / f"{m.parent.name}.onnx" for m in models]
        for onnx_path, ckpt_path in zip(exported, models, strict=True):
            if rt.rank == 0 and not onnx_export.is_current(onnx_path, ckpt_path):
                onnx_export.export(ckpt_path, onnx_path)
        runtime.barrier(rt.world)
        models = exported
    predictor = load_predictor(models, rt.device, rt.memory_format)
    settings = {"tta": tta, "precision": str(rt.dtype), "backend": pr.backend}
    if rt.rank == 0:
        manifest = predict.prepare(work, names, pr.shard_size, predictor, settings, comp.test)
        batch = (min(pr.batch_size, 2), predictor.pre.channels, *predictor.pre.size)
        per_image = budget.forward_seconds(lambda x: predictor(x, tta, rt.autocast), rt, batch)
        cost = budget.predict_cost(budget.competition_data(comp), predictor.pre, len(models), pr, per_image, rt)
        print(cost)
        todo = sum(min(pr.shard_size, len(names) - k * pr.shard_size) for k in shards.missing(work, manifest))
        budget.ensure_room(work, cost.disk * todo // max(1, len(names)), "the predictions")
    runtime.barrier(rt.world)
    manifest = shards.check_manifest(work)
    done = predict.predict_shards(
        predictor,
        comp.test,
        names,
        work,
        manifest,
        batch_size=pr.batch_size,
        workers=pr.workers,
        tta=tta,
        device=rt.device,
        autocast=rt.autocast,
        rank=rt.rank,
        world=rt.world,
        memory_format=rt.memory_format,
    )
    runtime.barrier(rt.world)
    return done


def main() -> None:
    p = params.load("download", "split", "predict")
    pr = p["predict"]
    status = runtime.relaunch(__spec__.name, pr.nproc)
    if status is not None:
        raise SystemExit(status)
    rt = runtime.for_inference(pr.mixed_precision)

    comp = open_competition(RAW, p["download"].competition, p["download"].hq)
    names = comp.test_names
    spec = [m for m in json.loads(BLEND.read_text())["members"] if m["weight"] > 0]
    if not spec:
        models = [MODELS / f"fold{k}" / "best.pt" for k in p["split"].validation_folds()]
        done = predict_into(WORK, models, comp, pr, pr.tta, pr.mixed_precision)
        what = f"{len(models)} model(s), TTA {tta_name(pr.tta)}"
    else:
        parts = []
        for m in spec:
            folder = members.fetch(m, FETCHED) if rt.rank == 0 else FETCHED / m["rev"]
            runtime.barrier(rt.world)
            work = WORK / "members" / m["rev"][:12]
            predict_into(work, sorted(folder.glob("models/fold*/best.pt")), comp, pr, m["tta"], m["amp"])
            parts.append(work)
        done = blend.blend_shards(parts, [m["weight"] for m in spec], WORK, pr.shard_size) if rt.rank == 0 else 0
        what = "a blend of " + ", ".join(f"{m['name']} x {m['weight']:.2f}" for m in spec)
    if rt.rank == 0:
        params.check_unchanged(p)
        shards.publish(WORK, OUT)
        manifest = shards.check_manifest(WORK)
        print(f"{OUT}: {len(names)} images in {manifest['shards']} shards ({done} written now by process 0, {what})")


if __name__ == "__main__":
    run_stage(main)
