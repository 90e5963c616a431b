"""Predict a test set into shards of uint8 probability maps (see shards), streaming and resumable:
`predict_test_set` is the one wiring from a predictor to complete shards that the predict stage, a Kaggle kernel,
the benches and the tests run.

The shards' fingerprint covers the models, the image list and their pixels, this code and every setting
that changes the numbers, so that a changed model never mixes with stale shards.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Callable

import torch
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from pipeline import provenance, runtime
from pipeline.competitions.archive import ImageArchive
from pipeline.data.preprocess import ImageDataset
from pipeline.images import ImageError
from pipeline.masks import postprocess
from pipeline.prediction import shards
from pipeline.prediction.predictor import Predictor
from pipeline.prediction.shards import PredictionError
from pipeline.runtime import Runtime


def prepare(
    out: Path,
    names: list[str],
    shard_size: int,
    predictor: Predictor,
    settings: dict,
    archive: ImageArchive,
    competition: str,
) -> dict:
    """Write the manifest of this prediction (deleting the shards of any other), with the competition and the test
    set's content that a pseudo-label round checks against its own. Returns the manifest."""
    content = archive.content(names)
    fingerprint = provenance.fingerprint(
        {
            "models": predictor.hashes,
            "names": names,
            "images": content,  # other pixels under the same names are predicted again
            "code": provenance.code_version(Path(__file__)),
            "shard_size": shard_size,
            **settings,
        }
    )
    return shards.prepare(
        out,
        fingerprint,
        len(names),
        shard_size,
        predictor.classes,
        predictor.class_names,
        predictor.pre.size,
        predictor.labels,
        {"competition": competition, "content": content},
    )


def predict_test_set(
    predictor: Predictor,
    archive: ImageArchive,
    names: list[str],
    work: Path,
    *,
    competition: str,
    rt: Runtime,
    tta: str,
    shard_size: int,
    batch_size: int,
    workers: int,
    settings: dict | None = None,
    before: Callable[[dict], None] | None = None,
) -> int:
    """Every missing shard of `work` for these test images: process 0 writes the manifest (which discards the shards
    of any other prediction; `before(manifest)` then runs there, e.g. the budget and its disk check), then each
    process predicts its shards, all of them waiting for each other in between. `settings` join the fingerprint
    (what else changes the numbers: the backend); `competition` (its slug) is recorded with the test set's content.
    Returns the images this process predicted."""
    settings = {"tta": tta, "precision": str(rt.dtype), **(settings or {})}
    if rt.rank == 0:
        manifest = prepare(work, names, shard_size, predictor, settings, archive, competition)
        if before is not None:
            before(manifest)
    runtime.barrier(rt.world)
    done = predict_shards(
        predictor,
        archive,
        names,
        work,
        shards.check_manifest(work),
        batch_size=batch_size,
        workers=workers,
        tta=tta,
        device=rt.device,
        autocast=rt.autocast,
        rank=rt.rank,
        world=rt.world,
        memory_format=rt.memory_format,
    )
    runtime.barrier(rt.world)
    return done


def _lower_priority(worker: int) -> None:
    """Decoding workers yield to the model: where they share CPU cores with its threads, those threads then
    never wait for a preempted worker (17 % less time outside the model on 2 cores, model time unchanged)."""
    if hasattr(os, "nice"):
        os.nice(10)


def predict_shards(
    predictor: Predictor,
    archive: ImageArchive,
    names: list[str],
    out: Path,
    manifest: dict,
    *,
    batch_size: int,
    workers: int,
    tta: str,
    device: torch.device,
    autocast,
    rank: int = 0,
    world: int = 1,
    memory_format=torch.contiguous_format,
) -> int:
    """Predict every missing shard assigned to this process (shard k goes to process k % world).

    Every image is resized to the model's input, whatever its own size; its size is kept with its probabilities, so
    that its mask is encoded at that size. Images of another size than the training images are listed once."""
    size = manifest["shard_size"]
    todo = [k for k in shards.missing(out, manifest) if k % world == rank]
    indices = [i for k in todo for i in range(k * size, min((k + 1) * size, len(names)))]
    if not indices:
        return 0
    pre = predictor.pre
    loader = DataLoader(
        Subset(ImageDataset(archive, names, pre), indices),
        batch_size=batch_size,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        worker_init_fn=_lower_priority,
    )
    sequence = shards.ShardSequence(out, manifest)
    done, odd = 0, []
    bar = tqdm(total=len(indices), desc=f"predict{f' [{rank}]' if world > 1 else ''}", unit="img", smoothing=0.05)
    try:
        for x, index, original, errors in loader:
            x = x.to(device, non_blocking=True).permute(0, 3, 1, 2)  # (N, C, H, W), channels_last in memory
            x = pre.normalize(x).contiguous(memory_format=memory_format)
            probs_u8 = postprocess.to_uint8(predictor(x, tta, autocast))  # (N, C, h, w)
            for i, j in enumerate(index.tolist()):
                if errors[i]:
                    raise ImageError(errors[i])
                size_j = original[i].tolist()
                if tuple(size_j) != tuple(pre.original):
                    odd.append(f"{names[j]} ({size_j[1]}x{size_j[0]})")
                done += sequence.add(j, names[j], probs_u8[i], size_j)
                bar.update(1)
    except OSError as err:
        if err.errno == errno.ENOSPC:
            raise PredictionError(
                f"disk full while writing {out}; finished shards are kept: free space and run again to continue"
            ) from None
        raise
    finally:
        bar.close()
        sequence.discard()
        _warn_odd_sizes(odd, pre.original)
    return done


def _warn_odd_sizes(odd: list[str], training: tuple[int, int]) -> None:
    if odd:
        print(
            f"warning: {len(odd)} test image(s) are not {training[1]}x{training[0]} like the training images; they "
            f"were resized for the model and their masks are encoded at their own size: "
            + ", ".join(odd[:5])
            + (", ..." if len(odd) > 5 else "")
        )
