"""bench.gpu's CPU dry run: the GPU check's every step on tiny data, so that it cannot rot between GPU loans."""

from __future__ import annotations

import json
import sys

import pytest
import torch

from tests.conftest import ROOT, run


def test_the_dry_run_passes_every_check_and_writes_the_report(tmp_path):
    out = tmp_path / "report"
    proc = run([sys.executable, "-m", "bench.gpu", "--out", str(out), "--dry-run"], ROOT)
    report = json.loads((out / "report.json").read_text())
    status = {c["check"]: c["status"] for c in report["checks"]}
    assert report["dry_run"] is True and "CPU" in report["device"]
    assert [c for c, s in status.items() if s == "FAIL"] == [], proc.stdout
    passed = {c for c, s in status.items() if s == "pass"}
    for expected in (
        "train bf16 autocast",
        "train fp16 autocast + GradScaler",
        "train channels_last + bf16",
        "resume (1 + resumed 1 epoch vs 2 epochs, float32)",
        "DDP under torchrun",
        "AMP (bf16) prediction with flip TTA vs float32",
    ):
        assert expected in passed, status
    assert "1 process(es) on gloo" in next(c["detail"] for c in report["checks"] if c["check"] == "DDP under torchrun")
    figures = {f["figure"]: f["value"] for f in report["figures"]}
    assert figures["predict + encode end to end"] > 0
    assert figures["100,064 test images (extrapolated)"] > 0
    assert any(name.startswith("training seed U-Net") and value > 0 for name, value in figures.items())
    markdown = (out / "report.md").read_text()
    assert "| DDP under torchrun | pass |" in markdown and "| predict + encode end to end |" in markdown


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here: the full check would run")
def test_without_a_gpu_the_full_check_refuses_and_points_at_the_dry_run(tmp_path):
    proc = run([sys.executable, "-m", "bench.gpu", "--out", str(tmp_path)], ROOT, check=False)
    assert proc.returncode == 2 and "--dry-run" in proc.stderr
    assert not (tmp_path / "report.json").exists()
