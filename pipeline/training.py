"""Training, top to bottom: runtime (device, precision, DDP) once, then data, model, optimiser, resume,
and the epoch loop of `train_one_epoch` and `validate`.

One call of `train_fold` trains the model that holds out one fold. It writes `last.pt` (everything
needed to resume) after every epoch and `best.pt` whenever the full-resolution validation Dice improves.
A killed run resumes from `last.pt` and ends with the same weights as an uninterrupted one: shuffling
and augmentation are seeded per epoch and per sample, and `last.pt` holds the optimiser, scheduler,
scaler and RNG states (and the moving average of the weights, with `train.ema`). A `last.pt` from other
params, data or code is never resumed.
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pandas as pd
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel
from torch.utils.data import DataLoader, DistributedSampler

from pipeline import params as P
from pipeline import paths, provenance, runtime
from pipeline.competitions import Competition
from pipeline.data.datasets import TrainDataset, ValidationDataset, collate_validation
from pipeline.data.preprocess import Preprocess
from pipeline.errors import UserError
from pipeline.images import channels_of, decode_image
from pipeline.models import checkpoint, encoders
from pipeline.models.factory import create_model
from pipeline.models.losses import SegmentationLoss
from pipeline.prediction.inference import to_probs
from pipeline.runtime import Runtime


class TrainingError(UserError):
    """Training cannot go on (empty fold, NaN loss); what is already trained is kept."""


def setup(p: P.TrainParams, dtype: torch.dtype | None = None) -> Runtime:
    """The training Runtime of these params (see runtime.for_training)."""
    return runtime.for_training(p.amp, p.channels_last, dtype)


def warmup_cosine(step: int, warmup: int, total: int, restarts: int = 0) -> float:
    """LR factor: linear warm-up to 1, then cosine decay to 1 % of the peak; with `restarts`, that decay is cut
    into restarts + 1 equal cycles, each starting again from the peak (SGDR's warm restarts)."""
    if step < warmup:
        return (step + 1) / warmup
    cycle = max(1, total - warmup) / (restarts + 1)
    progress = min(1.0, ((step - warmup) % cycle) / cycle) if step - warmup < cycle * (restarts + 1) else 1.0
    return 0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * progress))


def ema_update(decay: float):
    """AveragedModel's update with a warm-up of the decay, min(decay, (1 + n) / (10 + n)) after n updates (as
    TensorFlow's ExponentialMovingAverage with num_updates): a fixed decay would keep the random start in the
    average for thousands of steps, and weights that far apart do not average into a working network."""

    @torch.no_grad()
    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], n: torch.Tensor) -> None:
        d = min(decay, (1 + int(n)) / (10 + int(n)))
        if torch.is_floating_point(averaged[0]):
            torch._foreach_lerp_(averaged, current, 1 - d)
        else:  # BatchNorm's step counters
            for a, c in zip(averaged, current, strict=True):
                a.copy_(a * d + c * (1 - d))

    return update


def _all_finite(loss: torch.Tensor, rt: Runtime) -> bool:
    finite = torch.isfinite(loss.detach()).float()
    if rt.world > 1:
        dist.all_reduce(finite, op=dist.ReduceOp.MIN)
    return bool(finite.item())


def train_one_epoch(
    model,
    loader,
    loss_fn,
    optimizer,
    scheduler,
    rt: Runtime,
    grad_clip: float,
    epoch: int,
    report_memory=False,
    ema: AveragedModel | None = None,
    accumulate: int = 1,
) -> tuple[float, int]:
    """One pass over the training data; returns (mean loss, images seen by this process). The gradients of
    `accumulate` batches add up before each optimizer step (the epoch's last group may be shorter); `ema` is
    updated after every step. With `report_memory` (CUDA) it prints the peak memory after the first step, so that
    a batch size too large shows at once."""
    model.train()
    total, seen, batches = 0.0, 0, len(loader)
    optimizer.zero_grad(set_to_none=True)
    for step, (x, y) in enumerate(loader):
        group = min(accumulate, batches - step // accumulate * accumulate)  # batches in this step's group
        last = step % accumulate == group - 1
        x = x.to(rt.device, non_blocking=True, memory_format=rt.memory_format)
        y = y.to(rt.device, non_blocking=True)
        sync = last or not isinstance(model, DistributedDataParallel)  # DDP: all-reduce once per group
        with nullcontext() if sync else model.no_sync():
            with rt.autocast():
                logits = model(x)  # (N, C, H, W), or a list of them with deep supervision
            loss = loss_fn(logits, y)
            if not _all_finite(loss, rt):
                raise TrainingError(
                    f"the loss became {loss.item()} at epoch {epoch + 1}, step {step + 1}; the last good checkpoint "
                    f"is kept. Lower train.lr, raise train.grad_clip, or set train.amp false"
                )
            rt.scaler.scale(loss / group if group > 1 else loss).backward()
        if last:
            if grad_clip > 0:
                rt.scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            rt.scaler.step(optimizer)
            rt.scaler.update()
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
            if ema is not None:
                ema.update_parameters(model)
        if report_memory and step == 0:
            peak, card = torch.cuda.max_memory_allocated(rt.device), torch.cuda.get_device_properties(rt.device)
            print(
                f"GPU memory after the first step: {peak / 2**30:.1f} of {card.total_memory / 2**30:.0f} GiB at "
                f"batch {len(x)} of {tuple(x.shape[-2:])}"
            )
        total += loss.item() * len(x)
        seen += len(x)
    return total / max(seen, 1), seen


@torch.inference_mode()
def validate(model, loader, loss_fn, rt: Runtime, comp: Competition, names: list[str]) -> tuple[dict, object]:
    """Loss at the model size and the competition's metric at full resolution (threshold 0.5) on the validation
    fold; with several softmax classes also the mean Dice of the classes but background, which then picks the best
    epoch."""
    model.eval()
    board = comp.scoreboard()
    total, seen = 0.0, 0
    for x, small, full, index in loader:
        x = x.to(rt.device, non_blocking=True, memory_format=rt.memory_format)
        with rt.autocast():
            logits = model(x)
        total += loss_fn(logits, small.to(rt.device)).item() * len(x)
        seen += len(x)
        probs = to_probs(logits, comp.labels).cpu()
        for i, j in enumerate(index.tolist()):
            board.add(names[j], probs[i], full[i].numpy())
    scores = {"val_loss": total / max(seen, 1), "val_dice": board.dice(0.5)}
    if comp.labels == "multiclass":
        scores["val_class_dice"] = board.selection_score()
    return scores, board


def _score(record: dict) -> float:
    """What 'best' means for an epoch: the validation Dice (of the classes but background when multi-class)."""
    return record.get("val_class_dice", record["val_dice"])


def _ranked(history: list[dict], k: int) -> list[int]:
    """The epochs of the k best validation scores, best first (the earlier on a tie)."""
    return [r["epoch"] for r in sorted(history, key=lambda r: (-_score(r), r["epoch"]))[:k]]


def keep_best_k(out_dir: Path, k: int, history: list[dict], model: torch.nn.Module, meta: dict) -> None:
    """After an epoch (with k > 0): its weights join out_dir/epoch<N>.pt while among the k best so far; the others
    go. They live beside last.pt, so an interrupted run resumes with them."""
    if not k:
        return
    keep = _ranked(history, k)
    epoch = history[-1]["epoch"]
    if epoch in keep:
        checkpoint.save(out_dir / f"epoch{epoch}.pt", {**meta, "state_dict": model.state_dict(), "epoch": epoch})
    for path in out_dir.glob("epoch*.pt"):
        if int(path.stem.removeprefix("epoch")) not in keep:
            path.unlink()


def average_of_best(out_dir: Path, k: int, history: list[dict]) -> tuple[dict, list[int]]:
    """(the mean of the k best epochs' weights, those epochs): floating tensors averaged, counters from the best."""
    epochs = _ranked(history, k)
    states = [checkpoint.load(out_dir / f"epoch{e}.pt")["state_dict"] for e in epochs]
    averaged = {
        key: torch.stack([s[key].float() for s in states]).mean(0).to(value.dtype)
        if value.is_floating_point()
        else value
        for key, value in states[0].items()
    }
    return averaged, epochs


@dataclass
class FoldResult:
    fold: int
    best_dice: float
    best_epoch: int
    history: list[dict]


@dataclass
class FoldData:
    """One fold's images as the model sees them."""

    pre: Preprocess
    train_set: TrainDataset
    val_names: list[str]
    loader: DataLoader
    val_loader: DataLoader
    sampler: DistributedSampler | None
    shuffle: torch.Generator  # reseeded every epoch, so a resumed run shuffles as an uninterrupted one


def fold_data(
    p: P.TrainParams, rt: Runtime, comp: Competition, table: pd.DataFrame, fold: int, pseudo=None
) -> FoldData:
    """Datasets and loaders of the model that holds out `fold` (with `pseudo`'s images among the training ones);
    the preprocessing is fixed by the first image."""
    val_names = table.loc[table["fold"] == fold, "img"].tolist()
    train_names = table.loc[table["fold"] != fold, "img"].tolist()
    if not val_names or not train_names:
        raise TrainingError(
            f"fold {fold} leaves {len(train_names)} training and {len(val_names)} validation images; "
            f"check split.folds and split.fold against data/split.csv"
        )
    first = train_names[0]
    channels = channels_of(comp.read_image(first), first)
    _, original = decode_image(comp.read_image(first), first, channels, (8, 8))
    stats = encoders.preprocessing(p.model.encoder, p.model.encoder_weights) if p.model.has_encoder else None
    pre = Preprocess.for_data(original, p.scale, channels, stats)
    crop = p.crop_size
    if crop is not None and (crop[0] > pre.size[0] or crop[1] > pre.size[1]):
        raise TrainingError(
            f"train.crop {list(crop)} is larger than the images at train.scale {p.scale} ({pre.size[0]}x"
            f"{pre.size[1]}, height x width); lower train.crop or raise train.scale"
        )
    train_set = TrainDataset(comp, train_names, pre, p.augment, p.seed, crop, pseudo)
    val_set = ValidationDataset(comp, val_names, pre)
    shuffle = torch.Generator()
    sampler = DistributedSampler(train_set, rt.world, rt.rank, shuffle=True, seed=p.seed) if rt.world > 1 else None
    pin = rt.device.type == "cuda"
    loader = DataLoader(
        train_set,
        batch_size=p.batch_size,
        shuffle=sampler is None,
        sampler=sampler,
        generator=shuffle,
        num_workers=p.workers,
        pin_memory=pin,
    )
    val_loader = DataLoader(
        val_set, batch_size=p.batch_size, num_workers=p.workers, pin_memory=pin, collate_fn=collate_validation
    )
    return FoldData(pre, train_set, val_names, loader, val_loader, sampler, shuffle)


def build_model(p: P.TrainParams, rt: Runtime, data: FoldData, fold: int, outputs: int) -> tuple[torch.nn.Module, dict]:
    """(model on the device, its constructor config): seeded init, then encoder weights, then train.init_from."""
    torch.manual_seed(p.seed)
    config = checkpoint.model_config(p.model.arch, data.pre.channels, outputs, p.model.kwargs())
    model = create_model(**config)
    if p.model.has_encoder:
        skipped = encoders.load_weights(model, p.model.encoder, p.model.encoder_weights, data.pre.channels)
        if rt.main and p.model.encoder_weights != "none":
            print(
                f"fold {fold}: {p.model.encoder} weights from {p.model.encoder_weights}"
                + (f"; skipped {len(skipped)} layer(s): " + ", ".join(skipped[:5]) if skipped else "")
            )
    if p.init_from:
        skipped = checkpoint.init_from(model, Path(p.init_from))
        if rt.main:
            print(
                f"fold {fold}: initialised from {p.init_from}"
                + (f"; skipped {len(skipped)} layer(s): " + ", ".join(skipped) if skipped else "")
            )
    return model.to(rt.device, memory_format=rt.memory_format), config


def optimiser(p: P.TrainParams, model: torch.nn.Module, batches_per_epoch: int):
    """AdamW with a linear warm-up and a cosine decay (or warm restarts), stepped every optimizer step."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=p.lr, weight_decay=p.weight_decay)
    steps_per_epoch = -(-batches_per_epoch // p.accumulate)
    schedule = partial(
        warmup_cosine,
        warmup=int(p.warmup_epochs * steps_per_epoch),
        total=p.epochs * steps_per_epoch,
        restarts=p.restarts,
    )
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)


def agreement(p: dict, comp: Competition, table: pd.DataFrame, code: str) -> dict:
    """What the nodes of a multi-node run compare before they train one model together (runtime.meet): the params
    as resolved (but each node's own DataLoader workers and wait), the code, and the data with its split."""
    local = {"train.workers", "train.rdzv_timeout"}
    resolved = P.flat({name: P.as_dict(section) for name, section in p.items()})
    data = [table[["img", "fold"]].values.tolist(), comp.content(table["img"].tolist())]
    return {
        "params": {k: v for k, v in resolved.items() if k not in local},
        "code": code,
        "data": provenance.fingerprint(data),
    }


def run_fingerprint(
    p: P.TrainParams, rt: Runtime, comp: Competition, table: pd.DataFrame, fold: int, pre, pseudo=None
) -> str:
    """What a last.pt must have been made from to be resumed: the same params, data, split, pseudo-labels and code."""
    names = table["img"].tolist()
    return provenance.fingerprint(
        {
            "train": {k: v for k, v in P.as_dict(p).items() if k not in ("workers", "rdzv_timeout")},
            "fold": fold,
            "classes": comp.class_names if comp.labels != "multilabel" else [comp.labels, *comp.class_names],
            "preprocess": pre.to_dict(),
            "world": rt.world,
            "code": provenance.code_version(Path(__file__)),  # this module and everything it imports
            "data": provenance.fingerprint(
                [table[["img", "fold"]].values.tolist(), comp.root.name, comp.content(names)]
            ),
            "init": provenance.file_hash(Path(p.init_from)) if p.init_from else "",
            **({"pseudo": [pseudo.folder.name, pseudo.names]} if pseudo is not None else {}),
            "encoder_weights": (
                provenance.file_hash(Path(p.model.encoder_weights))
                if paths.is_weights_file(p.model.encoder_weights)
                else ""
            ),
        }
    )


def resume(
    last: Path, run_id: str, model, optimizer, scheduler, rt: Runtime, ema: AveragedModel | None = None
) -> tuple[int, float, int, list]:
    """(epochs done, best score, its epoch, history), restoring every state from `last` when it was made by this
    very run (`run_id`); (0, -1, 0, []) otherwise. Under DDP rank 0 reads it and sends it to every process: across
    machines only the first node has it (checkpoints are written once, by rank 0)."""
    state = checkpoint.load(last) if rt.main and last.is_file() else None
    if rt.world > 1:
        shared = [state]
        dist.broadcast_object_list(shared, src=0)
        state = shared[0]
    if state is None or state.get("fingerprint") != run_id:
        return 0, -1.0, 0, []
    model.load_state_dict(state["state_dict"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    rt.scaler.load_state_dict(state["scaler"])
    if ema is not None:
        ema.load_state_dict(state["ema"])
    torch.set_rng_state(state["rng"])
    return state["epoch"], state["best_dice"], state["best_epoch"], state["history"]


def _log(live, fold: int, record: dict) -> None:
    if live is None:
        return
    live.step = record["epoch"]
    for key, value in record.items():
        if key != "epoch":
            live.log_metric(f"fold{fold}/{key}", value)
    live.make_summary()


def train_fold(
    p: P.TrainParams,
    rt: Runtime,
    comp: Competition,
    table: pd.DataFrame,
    fold: int,
    out_dir: Path,
    live=None,
    progress: bool = True,
    stop_after: int | None = None,
    pseudo=None,
) -> FoldResult:
    """Train the model that holds out `fold`; resumable from out_dir/last.pt. `pseudo` (prediction.pseudo's
    PseudoLabels) adds pseudo-labelled test images to the training images.

    `stop_after` ends the run after that many epochs as an interruption would (the GPU check's resume test).
    """
    data = fold_data(p, rt, comp, table, fold, pseudo)
    model, config = build_model(p, rt, data, fold, comp.channels)
    optimizer, scheduler = optimiser(p, model, len(data.loader))
    # the moving average of the weights is what gets validated and saved as best.pt (the leaders' EMA)
    ema = AveragedModel(model, multi_avg_fn=ema_update(p.ema), use_buffers=True) if p.ema else None
    scored = ema.module if ema is not None else model
    loss_fn = SegmentationLoss(comp.channels, p.bce_weight, p.dice_weight, multilabel=comp.labels == "multilabel")
    run_id = run_fingerprint(p, rt, comp, table, fold, data.pre, pseudo)
    meta = {"model": config, "preprocess": data.pre.to_dict(), "class_names": comp.class_names, "fold": fold}
    meta.update(labels=comp.labels, fingerprint=run_id, params=P.as_dict(p))  # params: what it was trained with

    # ---- resume: only a last.pt of the same params, data, split and code
    last = out_dir / "last.pt"
    start, best, best_epoch, history = resume(last, run_id, model, optimizer, scheduler, rt, ema)
    if rt.main and start:
        print(f"fold {fold}: resuming from {last} after epoch {start} of {p.epochs}")
    elif rt.main and last.is_file():
        print(f"fold {fold}: {last} comes from other params, data or code; training from scratch")
    for record in history:
        _log(live, fold, record)

    net = torch.compile(model) if p.compile else model
    if dist.is_initialized():  # under torchrun, even with one process: the GPU check proves NCCL that way
        net = DistributedDataParallel(net, device_ids=[rt.local_rank] if rt.device.type == "cuda" else None)

    # ---- the loop
    for epoch in range(start, p.epochs if stop_after is None else min(p.epochs, stop_after)):
        data.train_set.set_epoch(epoch)
        data.shuffle.manual_seed(p.seed * 10_007 + epoch)
        if data.sampler is not None:
            data.sampler.set_epoch(epoch)
        started = time.perf_counter()
        memory = rt.main and rt.device.type == "cuda" and epoch == start
        train_loss, seen = train_one_epoch(
            net, data.loader, loss_fn, optimizer, scheduler, rt, p.grad_clip, epoch, memory, ema, p.accumulate
        )
        seconds = time.perf_counter() - started
        record = {
            "epoch": epoch + 1,
            "train_loss": train_loss,
            "lr": optimizer.param_groups[0]["lr"],
            "images_per_s": seen * rt.world / seconds,
            "seconds": seconds,
        }
        if rt.main:
            scores, _ = validate(scored, data.val_loader, loss_fn, rt, comp, data.val_names)
            record.update(scores)
            history.append(record)
            score = _score(record)
            keep_best_k(out_dir, p.average_best, history, scored, meta)
            if score > best:
                best, best_epoch = score, epoch + 1
                checkpoint.save(
                    out_dir / "best.pt", {**meta, "state_dict": scored.state_dict(), "epoch": epoch + 1, "dice": best}
                )
            checkpoint.save(
                last,
                {
                    **meta,
                    "state_dict": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "scaler": rt.scaler.state_dict(),
                    **({"ema": ema.state_dict()} if ema is not None else {}),
                    "rng": torch.get_rng_state(),
                    "epoch": epoch + 1,
                    "best_dice": best,
                    "best_epoch": best_epoch,
                    "history": history,
                },
            )
            _log(live, fold, record)
            if progress:
                print(
                    f"fold {fold} epoch {epoch + 1}/{p.epochs}: loss {train_loss:.4f}, val loss "
                    f"{record['val_loss']:.4f}, val Dice {record['val_dice']:.5f} (full size), "
                    f"{record['images_per_s']:.1f} img/s"
                )
        runtime.barrier(rt.world)
    best, best_epoch = _average_best(p, rt, comp, data, scored, loss_fn, out_dir, meta, history, (best, best_epoch))
    return FoldResult(fold, best, best_epoch, history)


def _average_best(p, rt: Runtime, comp, data: FoldData, scored, loss_fn, out_dir: Path, meta: dict, history, best):
    """With train.average_best k, once every epoch is done: the average of the k best epochs' weights (SWA-style),
    validated, becomes best.pt when it scores at least the best epoch (which an average of early, weak epochs does
    not: the demo's 4 epochs lost 0.006); returns (its score, its epoch), else `best` unchanged."""
    if not (p.average_best and rt.main and history and history[-1]["epoch"] == p.epochs):
        return best
    weights, epochs = average_of_best(out_dir, p.average_best, history)
    scored.load_state_dict(weights)
    score = _score(validate(scored, data.val_loader, loss_fn, rt, comp, data.val_names)[0])
    if score < best[0]:
        print(
            f"fold {meta['fold']}: the average of epochs {epochs} scores {score:.5f}, below epoch {best[1]}'s "
            f"{best[0]:.5f}: best.pt stays epoch {best[1]}"
        )
        return best
    checkpoint.save(out_dir / "best.pt", {**meta, "state_dict": weights, "epoch": p.epochs, "dice": score})
    print(f"fold {meta['fold']}: best.pt is the average of epochs {epochs}: validation score {score:.5f}")
    return score, p.epochs
