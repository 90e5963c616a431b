"""run_stage: one line instead of a traceback for what a user can fix, including a worker the kernel killed."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.conftest import ROOT

KILLED_WORKER = textwrap.dedent(
    """
    import os, signal
    import torch
    from torch.utils.data import DataLoader, Dataset
    from pipeline.errors import run_stage

    class Dies(Dataset):
        def __len__(self):
            return 4
        def __getitem__(self, i):
            os.kill(os.getpid(), signal.SIGKILL)  # what the kernel's out-of-memory killer does

    def main():
        for _ in DataLoader(Dies(), num_workers=1):
            pass

    run_stage(main)
    """
)


def test_a_killed_dataloader_worker_is_one_line_naming_what_to_lower():
    proc = subprocess.run([sys.executable, "-c", KILLED_WORKER], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "worker was killed" in lines[0] and "out of memory" in lines[0] and "predict.workers" in lines[0]
    assert "finished epochs and shards are kept" in lines[0]
