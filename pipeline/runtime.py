"""The one place for multi-process plumbing: torchrun relaunch, process group, rank.

A stage asked for N processes relaunches itself under `torch.distributed.run` (one process per GPU,
or gloo processes on a CPU); each process then finds its rank here.
"""

from __future__ import annotations

import os
import subprocess
import sys

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


def device(local_rank: int) -> torch.device:
    if torch.cuda.is_available():
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
        return dev
    return torch.device("cpu")


def barrier(world: int) -> None:
    if world > 1:
        dist.barrier()
