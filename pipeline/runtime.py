"""Where and how code runs, decided in one place: device, mixed precision, and the multi-process plumbing
(torchrun relaunch, process group, rank).

A stage asked for N processes relaunches itself under `torch.distributed.run` (one process per GPU,
or gloo processes on a CPU); each process then finds its rank here.
"""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import nullcontext
from functools import partial
from typing import Callable

import torch
import torch.distributed as dist


def relaunch(script: str, nproc: int) -> int | None:
    """Run `script` under torchrun with `nproc` processes and return its exit status; None when not needed."""
    if nproc <= 1 or "WORLD_SIZE" in os.environ:
        return None
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", script]
    return subprocess.call(cmd)


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


def barrier(world: int) -> None:
    if world > 1:
        dist.barrier()


def amp_dtype(device: torch.device, enabled: bool) -> torch.dtype | None:
    """The mixed-precision dtype: bf16 where the GPU supports it, else fp16; None (float32) on a CPU or when off."""
    if device.type != "cuda" or not enabled:
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def autocast(device: torch.device, dtype: torch.dtype | None) -> Callable:
    """A context factory: autocast to `dtype` on `device`, or nothing when dtype is None."""
    return partial(torch.autocast, device.type, dtype=dtype) if dtype is not None else nullcontext
