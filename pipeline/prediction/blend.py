"""A blend's arithmetic: the weighted mean of several experiments' uint8 probability maps of one image.

Evaluate (on out-of-fold maps) and predict (on test maps) both call `combine`, so the blend evaluate scores is, bit
for bit, the blend predict submits. Members of other model sizes are brought to the largest one by the pipeline's
own bilinear resize. numpy only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline import provenance
from pipeline.masks import postprocess
from pipeline.prediction import shards


def common_size(sizes: list) -> tuple[int, int]:
    """The (h, w) of the blend: the largest of the members' model sizes."""
    return tuple(max((tuple(s) for s in sizes), key=lambda s: (s[0] * s[1], s)))


def combine(maps: list[np.ndarray], weights: list[float], size: tuple[int, int]) -> np.ndarray:
    """uint8 (C, h, w) maps of one image -> their weighted mean, uint8 at `size`; weights sum to 1."""
    total = None
    for probs, weight in zip(maps, weights, strict=True):
        if weight == 0:
            continue
        if tuple(probs.shape[1:]) == tuple(size):
            values = probs.astype(np.float32)
        else:
            values = np.stack([postprocess.upsample(channel, size) for channel in probs])
        term = np.float32(weight) * values
        total = term if total is None else total + term
    return np.clip(np.rint(total), 0, 255).astype(np.uint8)


def write_blend(maps: list[shards.Maps], names: list[str], weights: list[float], out: Path, fingerprint: str,
                shard_size: int) -> int:  # fmt: skip
    """Write out/ as the weighted mean of the members' maps of `names`: its manifest (of `fingerprint`), then every
    shard it lacks, so that an interrupted run resumes. Returns the shards written now."""
    first = maps[0].manifest
    size = common_size([m.manifest["size"] for m in maps])
    manifest = shards.prepare(
        out, fingerprint, len(names), shard_size, first["classes"], first["class_names"], size, first["labels"],
        first.get("test_set"), first.get("train_set"),
    )  # fmt: skip
    todo = shards.missing(out, manifest)
    for k in todo:
        writer = shards.ShardWriter(out, k)
        for name in names[k * shard_size : (k + 1) * shard_size]:
            read = [m.read(name) for m in maps]
            writer.add(name, combine([probs for _, probs in read], weights, size), list(read[0][0]))
        writer.close()
    return len(todo)


def blend_shards(folders: list[Path], weights: list[float], out: Path, shard_size: int) -> int:
    """Write out/ as the weighted mean of the members' finished shard folders (the same images in the same order);
    resumable like predict. Returns the shards written now."""
    sources = [shards.Maps(folder) for folder in folders]
    try:
        names, test_set = sources[0].names, sources[0].manifest.get("test_set")
        if any((m.names, m.manifest.get("test_set")) != (names, test_set) for m in sources[1:]):
            raise shards.PredictionError(
                f"the members' predictions in {', '.join(map(str, folders))} differ in images (names or pixels)"
            )
        fingerprint = provenance.fingerprint(
            {
                "members": [m.manifest["fingerprint"] for m in sources],
                "weights": weights,
                "code": provenance.code_version(Path(__file__)),
            }
        )
        return write_blend(sources, names, weights, out, fingerprint, shard_size)
    finally:
        for m in sources:
            m.close()
