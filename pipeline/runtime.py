"""Where and how code runs, decided in one place: the Runtime (device, rank, mixed precision, memory format)
that train, evaluate, predict, `kseg predict` and the benches use, and the multi-process plumbing (torchrun
relaunch, process group, rank).

A stage asked for N processes relaunches itself under `torch.distributed.run` (one process per GPU,
or gloo processes on a CPU); each process then finds its rank here. Evaluate and predict run under the same
`for_inference` Runtime, so that the threshold evaluate chooses is chosen on the numbers predict submits.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from functools import partial
from typing import Callable

import torch
import torch.distributed as dist

from pipeline.errors import UserError


def relaunch(
    module: str,
    nproc: int,
    nnodes: int = 1,
    endpoint: str = "",
    timeout: float = 600.0,
    agreed: Callable[[], dict] | None = None,
) -> int | None:
    """Run `module` (`stages.train`, as `python -m` runs it: this checkout's code) under torchrun with `nproc`
    processes on each of `nnodes` machines and return its exit status; None when not needed. Across machines every
    node runs the same command with its own NODE_RANK (0, the node whose stage DVC runs, by default) and they meet
    at `endpoint`, host:port of node 0: global rank 0, which writes the checkpoints, dvclive and the outs, is always
    on node 0. Before torchrun, the nodes `meet` there and compare `agreed()` (what they will train)."""
    if nproc * nnodes <= 1 or "WORLD_SIZE" in os.environ:
        return None
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}"]
    if nnodes == 1:
        cmd.append("--standalone")
    else:
        node = os.environ.get("NODE_RANK", "0")
        if not node.isdigit() or int(node) >= nnodes:
            raise UserError(f"NODE_RANK must be a number in 0..{nnodes - 1} (train.nnodes {nnodes}), got {node!r}")
        meet(endpoint, nnodes, int(node), agreed() if agreed is not None else {}, timeout)
        host, port = endpoint.rsplit(":", 1)
        cmd += [f"--nnodes={nnodes}", f"--node_rank={node}", f"--master_addr={host}", f"--master_port={port}"]
    return subprocess.call([*cmd, "--module", module])


def meet(endpoint: str, nnodes: int, node: int, fingerprint: dict, timeout: float) -> None:
    """The nodes meet at node 0's `endpoint` before torchrun does, each sending its `fingerprint` ({'params': dotted
    keys and values, anything else: a hash}), and go on only when all came and all agree. A difference (another
    `lr`, other code, other data), a port in use, a host that does not resolve or a node that does not come within
    `timeout` seconds stops every node that came, in one line, instead of a torchrun traceback, a silent wait, or
    nodes that train together on different params while DVC locks node 0's."""
    host, port = endpoint.rsplit(":", 1)
    deadline = time.monotonic() + timeout
    fingerprint = json.loads(json.dumps(fingerprint))  # tuples as lists: as the other nodes' arrive
    if node == 0:
        _gather(int(port), nnodes, fingerprint, deadline, f"train.rdzv_endpoint {endpoint}", timeout)
    else:
        _join(host, int(port), node, fingerprint, deadline, f"train.rdzv_endpoint {endpoint}", timeout)


def _send(conn: socket.socket, message: dict) -> None:
    with contextlib.suppress(OSError):  # a node that left is told nothing
        conn.sendall(json.dumps(message).encode() + b"\n")


def _receive(conn: socket.socket) -> dict:
    """One JSON line; ValueError for anything else (a port scanner, another program on the port)."""
    line = conn.makefile("rb").readline(1 << 20)
    message = json.loads(line) if line.endswith(b"\n") else None
    if not isinstance(message, dict):
        raise ValueError("not a node of this pipeline")
    return message


def _differences(ours: dict, theirs: dict, node: int) -> str:
    """'' when node `node`'s fingerprint is node 0's, else what differs, each param with both values."""
    mine, its = ours.get("params", {}), theirs.get("params", {})
    keys = [k for k in sorted(set(mine) | set(its)) if mine.get(k) != its.get(k)]
    said = [f"{k} {its.get(k)!r} on node {node}, {mine.get(k)!r} on node 0" for k in keys[:4]]
    said += [f"{len(keys) - 4} more params"] if len(keys) > 4 else []
    said += [
        f"other {part}"
        for part in sorted(set(ours) | set(theirs))
        if part != "params" and ours.get(part) != theirs.get(part)
    ]
    if not said:
        return ""
    return (
        f"node {node} would train something else than node 0 ({'; '.join(said)}): give every node the same "
        f"params.yaml, git commit and data (`dvc pull`, `dvc repro split`), then start them again"
    )


def _arrival(server: socket.socket, deadline: float) -> tuple[socket.socket, str, dict] | None:
    """The next node's connection, address and message; None at the deadline or for a caller that is no node."""
    server.settimeout(max(0.01, deadline - time.monotonic()))
    try:
        conn, address = server.accept()
    except TimeoutError:
        return None
    try:
        conn.settimeout(max(1.0, deadline - time.monotonic()))
        return conn, address[0], _receive(conn)
    except (OSError, ValueError):
        conn.close()
        return None


def _listen(port: int, where: str) -> socket.socket:
    try:
        return socket.create_server(("", port))
    except OSError as e:
        raise UserError(
            f"{where}: node 0 cannot listen on port {port} ({e.strerror}): set a free port in train.rdzv_endpoint, "
            f"the same on every node"
        ) from None


def _admit(message: dict, came: set[int], nnodes: int, fingerprint: dict, where: str) -> int:
    """The node a message comes from, once it is a new one that agrees with node 0; UserError otherwise."""
    node = message.get("node")
    if not isinstance(node, int) or not 0 < node < nnodes or node in came:
        raise UserError(
            f"{where}: node {node!r} came twice or is not one of 1..{nnodes - 1} (train.nnodes {nnodes}): give each "
            f"machine its own NODE_RANK"
        )
    problem = _differences(fingerprint, message.get("fingerprint", {}), node)
    if problem:
        raise UserError(problem)
    return node


def _gather(port: int, nnodes: int, fingerprint: dict, deadline: float, where: str, timeout: float) -> None:
    """Node 0: wait for nodes 1..nnodes-1, compare each, then tell them all to go on (or why not)."""
    server = _listen(port, where)
    conns: list[socket.socket] = []
    came: set[int] = set()
    print(
        f"node 0 waits on port {port} for node(s) {', '.join(map(str, range(1, nnodes)))} of {nnodes} (each starts "
        f"`NODE_RANK=k python stages/train.py` with the same params), at most {timeout:g} s (train.rdzv_timeout)",
        flush=True,
    )
    try:
        while len(came) < nnodes - 1:
            if time.monotonic() >= deadline:
                absent = ", ".join(str(k) for k in range(1, nnodes) if k not in came)
                raise UserError(
                    f"{where}: node(s) {absent} did not come within {timeout:g} s: start `NODE_RANK=k python "
                    f"stages/train.py` there with the same params, and check that they reach node 0 at this address "
                    f"and port (a firewall, a wrong host); train.rdzv_timeout sets the wait"
                )
            arrived = _arrival(server, deadline)
            if arrived is None:
                continue
            conn, address, message = arrived
            conns.append(conn)
            node = _admit(message, came, nnodes, fingerprint, where)
            came.add(node)
            print(f"node {node} came from {address} and agrees ({len(came)} of {nnodes - 1})", flush=True)
        for conn in conns:
            _send(conn, {"ok": True})
        for conn in conns:  # each node closes first: the port is free again at once, for torchrun
            with contextlib.suppress(OSError):
                conn.recv(1)
    except UserError as e:
        for conn in conns:
            _send(conn, {"ok": False, "why": str(e)})
        raise
    finally:
        for conn in conns:
            conn.close()
        server.close()


def _join(host: str, port: int, node: int, fingerprint: dict, deadline: float, where: str, timeout: float) -> None:
    """Node k: reach node 0 (which may start later), send the fingerprint, and go on when node 0 says so."""
    try:
        socket.getaddrinfo(host, port)
    except socket.gaierror:
        raise UserError(f"{where}: node {node} cannot resolve the host {host!r}: set node 0's address there") from None
    print(f"node {node} joins node 0 at {host}:{port}, waiting at most {timeout:g} s (train.rdzv_timeout)", flush=True)
    while True:
        try:
            conn = socket.create_connection((host, port), timeout=max(0.1, min(5.0, deadline - time.monotonic())))
            break
        except OSError:
            if time.monotonic() >= deadline:
                raise UserError(
                    f"{where}: node 0 did not answer within {timeout:g} s: start the stage there (`dvc repro train`) "
                    f"with the same params, and check that node {node} reaches this address and port"
                ) from None
            time.sleep(0.2)
    with conn:
        _send(conn, {"node": node, "fingerprint": fingerprint})
        conn.settimeout(max(1.0, deadline - time.monotonic()) + 60.0)  # node 0's own wait ends first
        try:
            answer = _receive(conn)
        except (OSError, ValueError):
            raise UserError(f"{where}: node 0 went away before all nodes came; start every node again") from None
    if not answer.get("ok"):
        raise UserError(str(answer.get("why")))


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
