"""Predict the test set with the fold models: `dvc repro predict` -> data/predictions/.

Shards of uint8 probability maps at the model size, in sample_submission order, made in
checkpoints/predict/ (which DVC never restores or deletes, so an interrupted `dvc repro` or
`dvc exp run` continues with the first unfinished shard) and hard-linked into the out once all are
done. predict.backend onnxruntime exports the fold models to checkpoints/predict/onnx/ and runs them
with ONNX Runtime. With predict.nproc > 1 the stage relaunches itself under torchrun and the
processes share the shards (one GPU each).
"""

from pathlib import Path

from pipeline import budget, params, runtime
from pipeline.competitions import open_competition
from pipeline.errors import run_stage
from pipeline.prediction import onnx_export, predict, shards
from pipeline.prediction.predictor import load_predictor

RAW, MODELS, OUT, WORK = Path("data/raw"), Path("models"), Path("data/predictions"), Path("checkpoints/predict")


def main() -> None:
    p = params.load("download", "split", "predict")
    pr = p["predict"]
    status = runtime.relaunch(__file__, pr.nproc)
    if status is not None:
        raise SystemExit(status)
    rt = runtime.for_inference(pr.amp)
    rank, world = rt.rank, rt.world

    comp = open_competition(RAW, p["download"].competition, p["download"].hq)
    names = comp.test_names
    models = [MODELS / f"fold{k}" / "best.pt" for k in p["split"].validation_folds()]
    if pr.backend == "onnxruntime":
        exported = [WORK / "onnx" / f"{m.parent.name}.onnx" for m in models]
        for onnx_path, ckpt_path in zip(exported, models, strict=True):
            if rank == 0 and not onnx_export.is_current(onnx_path, ckpt_path):
                onnx_export.export(ckpt_path, onnx_path)
        runtime.barrier(world)
        models = exported
    predictor = load_predictor(models, rt.device, rt.memory_format)
    settings = {"tta": pr.tta, "precision": str(rt.dtype), "backend": pr.backend}
    if rank == 0:
        manifest = predict.prepare(WORK, names, pr.shard_size, predictor, settings, comp.test)
        batch = (min(pr.batch_size, 2), predictor.pre.channels, *predictor.pre.size)
        per_image = budget.forward_seconds(lambda x: predictor(x, pr.tta, rt.autocast), rt, batch)
        cost = budget.predict_cost(budget.competition_data(comp), predictor.pre, len(models), pr, per_image, rt)
        print(cost)
        todo = sum(min(pr.shard_size, len(names) - k * pr.shard_size) for k in shards.missing(WORK, manifest))
        budget.ensure_room(WORK, cost.disk * todo // max(1, len(names)), "the predictions")
    runtime.barrier(world)
    manifest = shards.check_manifest(WORK)
    done = predict.predict_shards(
        predictor,
        comp.test,
        names,
        WORK,
        manifest,
        batch_size=pr.batch_size,
        workers=pr.workers,
        tta=pr.tta,
        device=rt.device,
        autocast=rt.autocast,
        rank=rank,
        world=world,
        memory_format=rt.memory_format,
    )
    runtime.barrier(world)
    if rank == 0:
        params.check_unchanged(p)
        shards.publish(WORK, OUT)
        print(
            f"{OUT}: {len(names)} images in {manifest['shards']} shards ({done} written now by process 0, "
            f"{len(models)} model(s){', flip TTA' if pr.tta else ''})"
        )


if __name__ == "__main__":
    run_stage(main)
