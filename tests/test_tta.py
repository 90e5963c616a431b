"""TTA sets: every view is undone on the output, the former flag is the hflip set, and evaluate scores other sets
beside the chosen one."""

from __future__ import annotations

import shutil

import pytest
import torch

from pipeline import runtime
from pipeline.evaluation import evaluate
from pipeline.prediction.inference import TTA_SETS, probabilities
from tests.conftest import open_carvana, tiny_folds


class _FirstChannel(torch.nn.Module):
    """Logits = the first input channel: whatever the view, undoing it must give back the input's own map."""

    def forward(self, x):
        return x[:, :1] * 3.0


@pytest.mark.parametrize("name", list(TTA_SETS))
def test_every_view_is_undone_on_the_output(name):
    x = torch.randn(2, 3, 6, 10)  # not square: the transposed views see 10x6
    got = probabilities([_FirstChannel()], x, name)
    assert torch.allclose(got, torch.sigmoid(x[:, :1] * 3.0), atol=1e-6)
    assert len(set(TTA_SETS[name])) == len(TTA_SETS[name]) == {"none": 1, "d4": 8, "hvflip": 4}.get(name, 2)


def test_the_sets_differ_and_none_is_the_plain_model():
    torch.manual_seed(0)
    model = torch.nn.Conv2d(3, 1, 3, padding=1)
    x = torch.randn(2, 3, 8, 12)
    assert torch.equal(probabilities([model], x, "none"), torch.sigmoid(model(x)))
    assert not torch.equal(probabilities([model], x, "hflip"), probabilities([model], x, "d4"))


def test_evaluate_scores_other_tta_sets_on_the_same_images(tiny_demo, tiny_model, tmp_path):
    (tmp_path / "models/fold0").mkdir(parents=True)
    shutil.copyfile(tiny_model, tmp_path / "models/fold0/best.pt")
    comp, table = open_carvana(tiny_demo), tiny_folds(tiny_demo)
    boards = {"none": comp.scoreboard(), "d4": comp.scoreboard()}
    board, _ = evaluate.evaluate_folds(
        comp, table, tmp_path / "models", [0], batch_size=4, workers=0, tta="none", rt=runtime.for_inference(True),
        oof=tmp_path / "oof", tta_boards=boards,
    )  # fmt: skip
    assert boards["none"].names == board.names and boards["none"].curves[0].tolist() == board.curves[0].tolist()
    pairs = zip(boards["d4"].curves, board.curves, strict=True)
    assert len(boards["d4"]) == len(board) and any((a != b).any() for a, b in pairs)
