"""A fresh clone's whole demo `dvc repro`, timed stage by stage against the 2-minute goal.

    python -m bench.demo [--repeat 1]

Clones this repository (its last commit) into a temporary folder, as a user would, and runs the README's
`dvc repro` there with the packages of this environment; prints each stage's seconds and the total against
120 s. The machine's speed varies from hour to hour: compare totals measured in one run.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GOAL_S = 120.0


def timed_repro(clone: Path) -> tuple[float, dict[str, float]]:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    proc = subprocess.Popen(["dvc", "repro"], cwd=clone, env=env, stdout=subprocess.PIPE, text=True)
    started = last = time.perf_counter()
    stages: dict[str, float] = {}
    current = None
    for line in proc.stdout:
        match = re.match(r"Running stage '([^']+)'", line)
        if match:
            now = time.perf_counter()
            if current:
                stages[current] = now - last
            current, last = match[1], now
    if proc.wait() != 0:
        raise SystemExit("dvc repro failed")
    end = time.perf_counter()
    if current:
        stages[current] = end - last
    return end - started, stages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory(prefix="carvana-bench-demo-") as tmp:
            clone = Path(tmp) / "clone"
            subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
            total, stages = timed_repro(clone)
        print(", ".join(f"{name} {seconds:.0f} s" for name, seconds in stages.items()))
        ratio = total / GOAL_S
        print(f"fresh clone `dvc repro`: {total:.0f} s, {ratio:.2f}x the {GOAL_S:.0f} s goal ({os.cpu_count()} cores)")


if __name__ == "__main__":
    main()
