"""Peak memory of predict + encode as the test set grows: 200 against 2,000 demo test images.

    python -m bench.memory [--small 200] [--large 2000] [--model models/fold0/best.pt]

Each size runs in a child process (the predict and encode stages' code, DataLoader workers and
joblib workers included); the peak is the largest sum of resident memory over the whole process
tree, sampled every 20 ms from /proc. Streaming means the two peaks are about the same.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import demo_competition, encode_carvana, load_model, machine, predict_on_cpu
from pipeline import paths


def _tree_rss_kb(root: int) -> int:
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
        except OSError:
            continue
        pid = int(entry)
        children.setdefault(int(fields.get("PPid", "0")), []).append(pid)
        rss[pid] = int(fields.get("VmRSS", "0 kB").split()[0])
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        stack.extend(children.get(pid, []))
    return total


def peak_memory_mb(raw: Path, model: Path, work: Path) -> tuple[float, float]:
    cmd = [sys.executable, "-m", "bench.memory", "--child", str(raw), str(model), str(work)]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, _tree_rss_kb(proc.pid))
        time.sleep(0.02)
    if proc.returncode:
        raise SystemExit(f"child failed: {' '.join(cmd)}")
    return peak / 1024, time.perf_counter() - start


def child(raw: Path, model_path: Path, work: Path) -> None:
    from pipeline.competitions import open_competition
    from pipeline.competitions.carvana import SLUG

    comp = open_competition(raw, SLUG)
    names = comp.test_names
    model, pre = load_model(model_path)
    predict_on_cpu(model, pre, comp.test, names, work / "pred", shard_size=100)
    encode_carvana(work / "pred", names, work / "submission.csv.gz")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--small", type=int, default=200)
    parser.add_argument("--large", type=int, default=2000)
    parser.add_argument("--model", type=Path, default=paths.model(0))
    parser.add_argument("--child", nargs=3, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(*args.child)
    results = {}
    for count in (args.small, args.large):
        root = Path(tempfile.mkdtemp(prefix=f"carvana-bench-memory-{count}-"))
        raw = demo_competition(count, root=root)
        images = sum(1 for _ in open(raw / "sample_submission.csv")) - 1
        results[images] = peak_memory_mb(raw, args.model, root / "work")
    print(f"machine: {machine()}")
    for images, (peak, seconds) in results.items():
        print(f"{images:6d} test images (1918x1280): peak {peak:7.1f} MB over the process tree, {seconds:6.1f} s")
    small, large = (results[k][0] for k in sorted(results))
    print(f"ratio of peaks (large / small): {large / small:.3f}")


if __name__ == "__main__":
    main()
