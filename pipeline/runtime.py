"""Where and how code runs, decided in one place: the Runtime (device, rank, mixed precision, memory format)
that train, evaluate, predict, `kseg predict` and the benches use, and the multi-process plumbing (torchrun
relaunch, process group, rank).

A stage asked for N processes relaunches itself under `torch.distributed.run` (one process per GPU,
or gloo processes on a CPU); each process then finds its rank here. Evaluate and predict run under the same
`for_inference` Runtime, so that the threshold evaluate chooses is chosen on the numbers predict submits.
"""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import nullcontext
from dataclasses import dataclass
from functools import partial
from typing import Callable

import torch
import torch.distributed as dist

from pipeline.errors import UserError


def relaunch(module: str, nproc: int, nnodes: int = 1, endpoint: str = "") -> int | None:
    """Run `module` (`stages.train`, as `python -m` runs it: this checkout's code) under torchrun with `nproc`
    processes on each of `nnodes` machines and return its exit status; None when not needed. Across machines every
    node runs the same command with its own NODE_RANK (0, the node whose stage DVC runs, by default) and they meet
    at `endpoint`, host:port of node 0: global rank 0, which writes the checkpoints, dvclive and the outs, is always
    on node 0."""
    if nproc * nnodes <= 1 or "WORLD_SIZE" in os.environ:
        return None
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}"]
    if nnodes == 1:
        cmd.append("--standalone")
    else:
        node = os.environ.get("NODE_RANK", "0")
        if not node.isdigit() or int(node) >= nnodes:
            raise UserError(f"NODE_RANK must be a number in 0..{nnodes - 1} (train.nnodes {nnodes}), got {node!r}")
        host, port = endpoint.rsplit(":", 1)
        cmd += [f"--nnodes={nnodes}", f"--node_rank={node}", f"--master_addr={host}", f"--master_port={port}"]
    return subprocess.call([*cmd, "--module", module])


def init() -> tuple[int, int, int]:
    """(rank, world size, local rank), joining the process group whenever launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if "WORLD_SIZE" in os.environ and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank() if dist.is_initialized() else 0), world, local_rank


def device(local_rank: int = 0) -> torch.device:
    """The GPU of this process when there is one, else the CPU."""
    if torch.cuda.is_available():
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
        return dev
    return torch.device("cpu")


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work, so that a timing covers it (CUDA runs asynchronously)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def barrier(world: int) -> None:
    if world > 1:
        dist.barrier()


def native_bf16_cpu() -> bool:
    """Whether this CPU computes bf16 natively (AMX tiles or AVX512-BF16), where bf16 inference is 2x faster than
    float32 (the demo model: 6.4 -> 3.2 ms an image); elsewhere bf16 would be emulated, and slower."""
    return torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported()


def amp_dtype(device: torch.device, enabled: bool) -> torch.dtype | None:
    """The mixed-precision dtype: bf16 where the GPU supports it, else fp16; on a CPU, bf16 where it computes bf16
    natively (the demo trains 1.3x and predicts 2x faster), else None (float32); None when off."""
    if not enabled:
        return None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if device.type == "cpu" and native_bf16_cpu() else None


def autocast(device: torch.device, dtype: torch.dtype | None) -> Callable:
    """A context factory: autocast to `dtype` on `device`, or nothing when dtype is None."""
    return partial(torch.autocast, device.type, dtype=dtype) if dtype is not None else nullcontext


@dataclass
class Runtime:
    """Where and how a process runs, decided once."""

    device: torch.device
    rank: int
    world: int
    local_rank: int
    dtype: torch.dtype | None  # mixed precision; None is float32
    autocast: Callable
    scaler: torch.amp.GradScaler
    memory_format: torch.memory_format

    @property
    def main(self) -> bool:
        return self.rank == 0


def for_training(amp: bool, channels_last: bool, dtype: torch.dtype | None = None) -> Runtime:
    """Device, DDP process group, mixed precision (and its GradScaler for fp16) and memory format for training.

    `dtype` overrides the choice of `amp` (the GPU check runs fp16 with its GradScaler on a card that has bf16,
    and bf16 on a CPU)."""
    rank, world, local_rank = init()
    dev = device(local_rank)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    else:
        torch.use_deterministic_algorithms(True, warn_only=True)
    dtype = dtype or amp_dtype(dev, amp)
    scaler = torch.amp.GradScaler(dev.type, enabled=dtype == torch.float16)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    return Runtime(dev, rank, world, local_rank, dtype, autocast(dev, dtype), scaler, memory_format)


def for_inference(amp: bool) -> Runtime:
    """The Runtime of evaluate, predict and `kseg predict`: predict.amp's precision (bf16 on a CPU that computes
    it natively, too), channels_last (on a CPU too: the demo model's forward pass 2x faster, and bench.memory's peak
    as flat as without it: 1.02x from 208 to 2,000 test images)."""
    rank, world, local_rank = init()
    dev = device(local_rank)
    dtype = amp_dtype(dev, amp)
    memory_format = torch.channels_last
    scaler = torch.amp.GradScaler(dev.type, enabled=False)
    return Runtime(dev, rank, world, local_rank, dtype, autocast(dev, dtype), scaler, memory_format)
