"""Predict a test set into shards of uint8 probability maps, streaming and resumable.

The output folder holds `manifest.json` and `shard-NNNNN.zip` files of `predict.shard_size` images
each, in sample-submission order: per image a `.npy` of uint8 probabilities (C, h, w) at the model
size, plus `index.json` (names and original sizes). A shard appears under its final name only once
complete, so an interrupted run redoes at most one shard per process. The manifest's fingerprint
covers the models, the image list and every setting that changes the numbers; when it changes, the
old shards are deleted before any new one is written, so a changed model never mixes with stale shards.
"""

from __future__ import annotations

import errno
import io
import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from pipeline import provenance
from pipeline.data.datasets import ImageDataset, Preprocess
from pipeline.data.images import ImageError
from pipeline.download.archive import ImageArchive
from pipeline.models import checkpoint
from pipeline.prediction.inference import probabilities
from pipeline.prediction.shards import MANIFEST, PredictionError, shard_name
from pipeline.submission import postprocess


@dataclass
class Ensemble:
    """The models to average and what they agree on."""

    models: list[nn.Module]  # or OnnxModel: anything that maps a batch to logits
    pre: Preprocess
    classes: int
    class_names: list[str]
    hashes: list[str]


def load_model(path: Path, device: torch.device, memory_format=torch.contiguous_format) -> tuple[object, dict]:
    """(callable model, its description) from a .pt checkpoint (torch) or an exported .onnx (ONNX Runtime)."""
    if Path(path).suffix == ".onnx":
        from pipeline.prediction.onnx_export import OnnxModel

        model = OnnxModel(path)
        return model, model.meta
    ckpt = checkpoint.load(path)
    return checkpoint.build_model(ckpt).to(device, memory_format=memory_format), ckpt


def load_ensemble(paths: list[Path], device: torch.device, memory_format=torch.contiguous_format) -> Ensemble:
    """Load models (.pt or .onnx) that share preprocessing and classes (e.g. the fold models)."""
    if not paths:
        raise PredictionError("no model to predict with; train one first (`dvc repro train`)")
    models, first = [], None
    for path in paths:
        model, ckpt = load_model(path, device, memory_format)
        if first is None:
            first = (path, ckpt)
        elif ckpt["model"]["classes"] != first[1]["model"]["classes"] or ckpt["preprocess"] != first[1]["preprocess"]:
            raise PredictionError(
                f"{path} predicts {ckpt['model']['classes']} class(es) at {ckpt['preprocess']['size']} "
                f"but {first[0]} predicts {first[1]['model']['classes']} at "
                f"{first[1]['preprocess']['size']}; models to average must match: retrain them together"
            )
        models.append(model)
    ckpt = first[1]
    hashes = [
        f"onnx:{m.meta['source_sha256']}" if Path(p).suffix == ".onnx" else checkpoint.file_hash(p)
        for p, m in zip(paths, models)
    ]  # an .onnx is known by the checkpoint it came from
    return Ensemble(
        models, Preprocess.from_dict(ckpt["preprocess"]), ckpt["model"]["classes"], ckpt["class_names"], hashes
    )


def prepare(
    out: Path, names: list[str], shard_size: int, ensemble: Ensemble, settings: dict, archive: ImageArchive
) -> dict:
    """Write the manifest, deleting every shard of another fingerprint first. Returns the manifest."""
    run_id = checkpoint.fingerprint(
        {
            "models": ensemble.hashes,
            "names": names,
            "images": archive.content(names),  # other pixels under the same names are predicted again
            "code": provenance.code_version(Path(__file__)),
            "shard_size": shard_size,
            **settings,
        }
    )
    manifest = {
        "fingerprint": run_id,
        "images": len(names),
        "shard_size": shard_size,
        "shards": -(-len(names) // shard_size),
        "classes": ensemble.classes,
        "class_names": ensemble.class_names,
        "size": list(ensemble.pre.size),
    }
    out.mkdir(parents=True, exist_ok=True)
    path = out / MANIFEST
    old = json.loads(path.read_text()) if path.is_file() else None
    if old != manifest:
        for stale in list(out.glob("shard-*.zip")) + list(out.glob("shard-*.part")):
            stale.unlink()
        if old is not None:
            print(f"{out}: models or settings changed; the old shards were deleted")
        path.write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _lower_priority(worker: int) -> None:
    """Decoding workers yield to the model: where they share CPU cores with its threads, those threads then
    never wait for a preempted worker (17 % less time outside the model on 2 cores, model time unchanged)."""
    if hasattr(os, "nice"):
        os.nice(10)


class _ShardWriter:
    """Collects one shard's members under a temporary name; renames it when complete."""

    def __init__(self, out: Path, k: int):
        self.path = out / shard_name(k)
        self.part = out / (shard_name(k) + ".part")
        self.zip = zipfile.ZipFile(self.part, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1)
        self.index: list[dict] = []

    def add(self, name: str, probs: np.ndarray, original: list[int]) -> None:
        buf = io.BytesIO()
        np.save(buf, probs)
        self.zip.writestr(name.rsplit(".", 1)[0] + ".npy", buf.getvalue())
        self.index.append({"img": name, "size": original})

    def close(self) -> None:
        self.zip.writestr("index.json", json.dumps(self.index))
        self.zip.close()
        self.part.replace(self.path)

    def discard(self) -> None:
        self.zip.close()
        self.part.unlink(missing_ok=True)


def predict_shards(
    ensemble: Ensemble,
    archive: ImageArchive,
    names: list[str],
    out: Path,
    manifest: dict,
    *,
    batch_size: int,
    workers: int,
    tta: bool,
    device: torch.device,
    autocast,
    rank: int = 0,
    world: int = 1,
    memory_format=torch.contiguous_format,
) -> int:
    """Predict every missing shard assigned to this process (shard k goes to process k % world)."""
    size, shards = manifest["shard_size"], manifest["shards"]
    todo = [k for k in range(shards) if k % world == rank and not (out / shard_name(k)).is_file()]
    indices = [i for k in todo for i in range(k * size, min((k + 1) * size, len(names)))]
    if not indices:
        return 0
    loader = DataLoader(
        Subset(ImageDataset(archive, names, ensemble.pre), indices),
        batch_size=batch_size,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        worker_init_fn=_lower_priority,
    )
    writer: _ShardWriter | None = None
    done = 0
    bar = tqdm(total=len(indices), desc=f"predict{f' [{rank}]' if world > 1 else ''}", unit="img", smoothing=0.05)
    try:
        for x, index, original, errors in loader:
            x = x.to(device, non_blocking=True).permute(0, 3, 1, 2)  # (N, C, H, W), channels_last in memory
            x = ensemble.pre.normalize(x).contiguous(memory_format=memory_format)
            probs = probabilities(ensemble.models, x, tta, autocast)
            probs_u8 = postprocess.to_uint8(probs)  # (N, C, h, w)
            for i, j in enumerate(index.tolist()):
                if errors[i]:
                    raise ImageError(errors[i])
                size_j = original[i].tolist()
                if tuple(size_j) != tuple(ensemble.pre.original):
                    raise ImageError(
                        f"{names[j]} is {size_j[1]}x{size_j[0]} but the model was trained on "
                        f"{ensemble.pre.original[1]}x{ensemble.pre.original[0]} images; every test image "
                        f"must have the training size: replace the file"
                    )
                k = j // size
                writer = writer or _ShardWriter(out, k)
                writer.add(names[j], probs_u8[i], size_j)
                if len(writer.index) == min(size, len(names) - k * size):  # the shard's last image
                    writer.close()
                    writer, done = None, done + 1
                bar.update(1)
    except OSError as err:
        if err.errno == errno.ENOSPC:
            raise PredictionError(
                f"disk full while writing {out}; finished shards are kept: free space and run again to continue"
            ) from None
        raise
    finally:
        bar.close()
        if writer is not None:
            writer.discard()
    return done
