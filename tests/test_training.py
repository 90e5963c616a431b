"""Training: checkpoints, determinism, resume after an interruption, NaN, transfer, DDP."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading

import pytest
import torch

from pipeline import params, runtime, training
from pipeline.errors import UserError
from pipeline.models import checkpoint, losses
from tests.conftest import copy_project, edit_yaml, open_carvana, tiny_folds, tiny_train_params, train_tiny


def _weights(path):
    return checkpoint.load(path)["state_dict"]


def _same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _average(last: dict) -> dict:
    """The moving average's weights in a last.pt, under the model's own keys."""
    return {k.removeprefix("module."): v for k, v in last["ema"].items() if k.startswith("module.")}


def test_checkpoints_are_written_and_the_same_params_give_the_same_weights(tiny_demo, tmp_path):
    result = train_tiny(tiny_demo, tmp_path / "a")
    train_tiny(tiny_demo, tmp_path / "b")
    assert [r["epoch"] for r in result.history] == [1, 2]
    assert {"train_loss", "val_loss", "val_dice", "lr", "images_per_s", "seconds"} <= set(result.history[-1])
    assert _same(_weights(tmp_path / "a/last.pt"), _weights(tmp_path / "b/last.pt"))
    best = checkpoint.load(tmp_path / "a/best.pt")
    model = checkpoint.build_model(best)
    assert best["model"]["arch"] == "unet" and best["preprocess"]["size"] == [48, 80]
    assert model(torch.zeros(1, 3, 48, 80)).shape == (1, 1, 48, 80)


def test_an_input_scale_above_one_trains_at_twice_the_size(tiny_demo, tmp_path):
    """For structures too thin for the network's strides at full size (the plan's 2 and 4)."""
    from pipeline.masks import postprocess

    result = train_tiny(tiny_demo, tmp_path, scale=2.0, epochs=1)
    best = checkpoint.load(tmp_path / "best.pt")
    assert best["preprocess"]["size"] == [192, 320] and best["preprocess"]["original"] == [96, 160]
    prob = torch.sigmoid(checkpoint.build_model(best)(torch.zeros(1, 3, 192, 320)))[0, 0]
    assert postprocess.binary_mask((prob * 255).byte().numpy(), (96, 160), 0.5).shape == (96, 160)  # resized down
    assert len(result.history) == 1 and "val_dice" in result.history[0]  # validated at the full size


@pytest.mark.parametrize("ema", [0.0, 0.9])
def test_an_interrupted_training_resumes_to_the_same_weights(tiny_demo, tmp_path, monkeypatch, ema):
    """With train.ema, the moving average is resumed too, and it is what validation scores and best.pt holds."""
    whole = train_tiny(tiny_demo, tmp_path / "whole", epochs=3, ema=ema)
    calls = {"n": 0}
    original = losses.SegmentationLoss.forward

    def dies_in_epoch_two(self, logits, mask):
        calls["n"] += 1
        if calls["n"] == 8:  # epoch 1 has 4 steps + 2 validation batches; this is the middle of epoch 2
            raise KeyboardInterrupt
        return original(self, logits, mask)

    monkeypatch.setattr(losses.SegmentationLoss, "forward", dies_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        train_tiny(tiny_demo, tmp_path / "cut", epochs=3, ema=ema)
    after_one = checkpoint.load(tmp_path / "cut/last.pt")
    assert after_one["epoch"] == 1
    monkeypatch.setattr(losses.SegmentationLoss, "forward", original)
    resumed = train_tiny(tiny_demo, tmp_path / "cut", epochs=3, ema=ema)
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3]
    assert _same(_weights(tmp_path / "whole/last.pt"), _weights(tmp_path / "cut/last.pt"))
    last = checkpoint.load(tmp_path / "whole/last.pt")
    if ema:
        average = _average(last)
        assert _same(average, _average(checkpoint.load(tmp_path / "cut/last.pt")))
        assert not _same(average, last["state_dict"])  # an average, not the last step's weights
        assert whole.best_epoch in (1, 3)  # the tiny model's Dice: flat or rising
        best_average = _average(after_one) if whole.best_epoch == 1 else average
        assert _same(_weights(tmp_path / "whole/best.pt"), best_average)  # best.pt holds the average it scored
    else:
        assert "ema" not in last
    checkpoint.build_model(checkpoint.load(tmp_path / "whole/best.pt"))  # evaluate and predict load it as any model


def test_the_moving_average_warms_up_its_decay():
    update = training.ema_update(0.99)
    # the new value's weight, 1 - min(0.99, (1 + n) / (10 + n)): 0.9, then 0.09, then the decay's 0.01
    for n, expected in ((0, 0.9), (90, 0.09), (10_000, 0.01)):
        averaged = [torch.zeros(3)]
        update(averaged, [torch.ones(3)], torch.tensor(n))
        assert torch.allclose(averaged[0], torch.full((3,), expected))
    counter = [torch.zeros(1, dtype=torch.long)]  # BatchNorm's num_batches_tracked
    update(counter, [torch.full((1,), 100)], torch.tensor(0))
    assert counter[0].dtype == torch.long and counter[0].item() == 90


def test_other_params_never_resume_a_stale_checkpoint(tiny_demo, tmp_path, capsys):
    train_tiny(tiny_demo, tmp_path / "m", epochs=1)
    train_tiny(tiny_demo, tmp_path / "m", epochs=1, lr=0.01)
    assert "comes from other params" in capsys.readouterr().out
    assert checkpoint.load(tmp_path / "m/last.pt")["epoch"] == 1


def test_nan_loss_stops_with_a_message_and_keeps_the_last_good_checkpoint(tiny_demo, tmp_path, monkeypatch):
    original = losses.SegmentationLoss.forward
    calls = {"n": 0}

    def nan_later(self, logits, mask):
        calls["n"] += 1
        value = original(self, logits, mask)
        return value * float("nan") if calls["n"] == 8 else value

    monkeypatch.setattr(losses.SegmentationLoss, "forward", nan_later)
    with pytest.raises(training.TrainingError, match="loss became nan at epoch 2.*last good checkpoint is kept"):
        train_tiny(tiny_demo, tmp_path / "n", epochs=3)
    kept = checkpoint.load(tmp_path / "n/last.pt")
    assert kept["epoch"] == 1 and all(
        torch.isfinite(v).all() for v in kept["state_dict"].values() if v.is_floating_point()
    )


def test_init_from_another_class_count_skips_the_head(tiny_demo, tiny_multiclass, tmp_path, capsys):
    train_tiny(tiny_demo, tmp_path / "binary", epochs=1)
    result = train_tiny(tiny_multiclass, tmp_path / "multi", epochs=1, init_from=str(tmp_path / "binary/best.pt"))
    out = capsys.readouterr().out
    assert "skipped 2 layer(s): head.weight (shape (1, 4, 1, 1) here (5, 4, 1, 1))" in out
    best = checkpoint.load(tmp_path / "multi/best.pt")
    assert best["model"]["classes"] == 5 and best["dice"] == result.best_dice


def test_an_empty_fold_is_refused(tiny_demo, tmp_path):
    p = tiny_train_params()
    comp, table = open_carvana(tiny_demo), tiny_folds(tiny_demo)
    table = table.assign(fold=0)
    with pytest.raises(training.TrainingError, match="leaves 0 training and 48 validation images"):
        training.train_fold(p, training.setup(p), comp, table, 0, tmp_path)


def test_unet_plus_plus_with_deep_supervision_trains(tiny_demo, tmp_path):
    p = tiny_train_params()
    model = params.replace(p.model, arch="unetplusplus", deep_supervision=True)
    result = train_tiny(tiny_demo, tmp_path / "upp", epochs=1, model=model)
    assert checkpoint.load(tmp_path / "upp/best.pt")["model"]["deep_supervision"] is True
    assert result.history[0]["val_dice"] >= 0.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _meet(fingerprints: dict[int, dict], endpoint: str, timeout: float = 30.0) -> dict[int, str]:
    """Nodes (their NODE_RANK: fingerprint) of a 2-node run meeting at `endpoint`, each on a thread: what each one
    stopped with ('' when it went on)."""
    said: dict[int, str] = {}

    def node(k: int) -> None:
        try:
            runtime.meet(endpoint, 2, k, fingerprints[k], timeout)
            said[k] = ""
        except UserError as e:
            said[k] = str(e)

    threads = [threading.Thread(target=node, args=(k,)) for k in fingerprints]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return said


FINGERPRINT = {"params": {"train.lr": 0.001, "train.crop": (64, 64)}, "code": "c0de", "data": "da7a"}


def test_nodes_that_agree_go_on_with_the_port_free_and_node_0_says_whom_it_waits_for(capsys):
    port = _free_port()
    assert _meet({0: FINGERPRINT, 1: FINGERPRINT}, f"127.0.0.1:{port}") == {0: "", 1: ""}
    out = capsys.readouterr().out
    assert f"node 0 waits on port {port} for node(s) 1 of 2" in out and "at most 30 s (train.rdzv_timeout)" in out
    assert "node 1 came from 127.0.0.1 and agrees (1 of 1)" in out
    with socket.create_server(("", port)):  # what torchrun's store does next
        pass


def test_nodes_that_would_train_otherwise_all_stop_naming_the_difference():
    other = {**FINGERPRINT, "params": {**FINGERPRINT["params"], "train.lr": 0.0003}, "code": "beef"}
    said = _meet({0: FINGERPRINT, 1: other}, f"127.0.0.1:{_free_port()}")
    assert said[0] == said[1], said  # both stop, with the same line
    assert "node 1 would train something else than node 0 (train.lr 0.0003 on node 1, 0.001 on node 0; other code)" \
        in said[0] and "give every node the same params.yaml, git commit and data" in said[0]  # fmt: skip


def test_a_node_that_never_comes_an_endpoint_in_use_or_unknown_stop_in_one_line():
    port = _free_port()
    endpoint = f"127.0.0.1:{port}"
    assert (
        "node(s) 1 did not come within 0.5 s: start `NODE_RANK=k python stages/train.py` there"
        in _meet({0: FINGERPRINT}, endpoint, 0.5)[0]
    )
    assert "node 0 did not answer within 0.5 s: start the stage there" in _meet({1: FINGERPRINT}, endpoint, 0.5)[1]
    with socket.create_server(("", port)):  # another program holds node 0's port
        said = _meet({0: FINGERPRINT}, endpoint)[0]
    assert said.startswith(f"train.rdzv_endpoint {endpoint}: node 0 cannot listen on port {port} (") and "free" in said
    said = _meet({1: FINGERPRINT}, "node0.invalid:29500")[1]
    assert said == "train.rdzv_endpoint node0.invalid:29500: node 1 cannot resolve the host 'node0.invalid': set " \
        "node 0's address there"  # fmt: skip


@pytest.mark.slow
def test_two_localhost_nodes_train_one_model_and_resume_together(tiny_project, tmp_path):
    """Two copies of the project stand for two machines: each runs the train stage with train.nnodes=2 (and its
    NODE_RANK) and meets the other at node 0's endpoint; node 0 alone writes checkpoints and outs, and a second run
    resumes on both."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    nodes = [copy_project(tiny_project, tmp_path / f"node{k}") for k in range(2)]
    for node in nodes:
        shutil.rmtree(node / "checkpoints" / "train", ignore_errors=True)
        shutil.rmtree(node / "models")
        edit_yaml(node / "params.yaml", lambda d: d["train"].update(nnodes=2, rdzv_endpoint=f"127.0.0.1:{port}"))

    def start() -> tuple[list[int], list[str]]:
        """Both nodes' exit codes and output, each into a file: a pipe read only after node 0 ends could fill up
        with node 1's output and stop node 1 mid-write, while node 0 waits for it at a barrier."""
        logs = [tmp_path / f"node{k}.log" for k in range(2)]
        procs = []
        for k, (node, log) in enumerate(zip(nodes, logs, strict=True)):
            with open(log, "w") as out:
                env = {**os.environ, "NODE_RANK": str(k)}
                command = [sys.executable, "-m", "stages.train"]
                procs.append(subprocess.Popen(command, cwd=node, env=env, stdout=out, stderr=subprocess.STDOUT))
        try:
            codes = [p.wait(timeout=300) for p in procs]
        finally:
            for p in procs:
                p.kill()
        return codes, [log.read_text() for log in logs]

    def both() -> list[str]:
        codes, outs = start()
        assert codes == [0, 0], "\n".join(outs)
        return outs

    edit_yaml(nodes[1] / "params.yaml", lambda d: d["train"].update(lr=0.0123))  # node 1 with another lr
    codes, outs = start()
    assert 0 not in codes and all("node 1 would train something else than node 0 (train.lr 0.0123" in o for o in outs)
    assert not (nodes[0] / "checkpoints/train").exists()  # stopped before anything trained
    shutil.copy(nodes[0] / "params.yaml", nodes[1] / "params.yaml")  # the same params again

    outs = both()
    assert "fold 0 epoch 1/1" in outs[0] and "epoch" not in outs[1]  # global rank 0 is on node 0
    assert checkpoint.load(nodes[0] / "models/fold0/best.pt")["epoch"] == 1
    assert (nodes[0] / "dvclive/train/metrics.json").is_file()
    assert not (nodes[1] / "models").exists() and not (nodes[1] / "checkpoints/train/fold0/last.pt").exists()

    again = both()  # node 1, without last.pt, learns from rank 0 that the fold is done: no hang, no new epoch
    assert "resuming from" in again[0] and "after epoch 1 of 1" in again[0]
    assert not any("epoch 1/1" in o for o in again)


def test_accumulated_batches_make_one_optimizer_step_and_the_schedule_follows(tiny_demo, tmp_path):
    whole = train_tiny(tiny_demo, tmp_path / "a", epochs=1, batch_size=4)  # 32 training images: 8 batches
    grouped = train_tiny(tiny_demo, tmp_path / "b", epochs=1, batch_size=4, accumulate=3)  # groups of 3, 3, 2

    def steps(path):
        state = checkpoint.load(path)["optimizer"]["state"]
        return {int(s["step"]) for s in state.values()}

    assert steps(tmp_path / "a/last.pt") == {8} and steps(tmp_path / "b/last.pt") == {3}
    assert checkpoint.load(tmp_path / "b/last.pt")["scheduler"]["last_epoch"] == 3
    assert [len(r.history) for r in (whole, grouped)] == [1, 1]
    assert not _same(_weights(tmp_path / "a/last.pt"), _weights(tmp_path / "b/last.pt"))


def test_warm_restarts_return_to_the_peak_once_per_cycle():
    factors = [training.warmup_cosine(s, warmup=2, total=42, restarts=3) for s in range(42)]
    assert factors[:2] == [0.5, 1.0]
    peaks = [s for s in range(2, 42) if factors[s] == 1.0]
    assert peaks == [2, 12, 22, 32]  # four cycles of 10 steps after the warm-up
    assert all(factors[s] > factors[s + 1] for s in range(2, 11)) and min(factors) >= 0.01
    assert [training.warmup_cosine(s, 2, 42) for s in range(42)] == [
        training.warmup_cosine(s, 2, 42, restarts=0) for s in range(42)
    ]


def _average_validated(monkeypatch, shift: float) -> None:
    """The validation after the 3 epochs (the average's) reports its Dice moved by `shift`: above or below them all."""
    real, calls = training.validate, []

    def validate(*args):
        scores, board = real(*args)
        calls.append(1)
        return ({**scores, "val_dice": scores["val_dice"] + shift} if len(calls) > 3 else scores), board

    monkeypatch.setattr(training, "validate", validate)


def test_best_pt_is_the_average_of_the_k_best_epochs_when_it_validates_higher(tiny_demo, tmp_path, monkeypatch):
    _average_validated(monkeypatch, +1.0)
    result = train_tiny(tiny_demo, tmp_path, epochs=3, average_best=2)
    kept = sorted(int(p.stem.removeprefix("epoch")) for p in tmp_path.glob("epoch*.pt"))
    ranked = sorted(result.history, key=lambda r: (-r["val_dice"], r["epoch"]))[:2]
    assert kept == sorted(r["epoch"] for r in ranked)  # only the k best epochs' weights are kept
    states = [_weights(tmp_path / f"epoch{e}.pt") for e in kept]
    best = checkpoint.load(tmp_path / "best.pt")
    assert best["epoch"] == result.best_epoch == 3 and best["dice"] == result.best_dice >= 1  # the average's score
    for key, value in best["state_dict"].items():
        if value.is_floating_point():
            assert torch.allclose(value, (states[0][key] + states[1][key]) / 2, atol=1e-6), key
    checkpoint.build_model(best)  # a model like any other


def test_the_best_epoch_stays_best_pt_when_the_average_validates_lower(tiny_demo, tmp_path, monkeypatch, capsys):
    _average_validated(monkeypatch, -1.0)
    result = train_tiny(tiny_demo, tmp_path, epochs=3, average_best=2)
    top = max(result.history, key=lambda r: (r["val_dice"], -r["epoch"]))
    best = checkpoint.load(tmp_path / "best.pt")
    assert result.best_epoch == best["epoch"] == top["epoch"] and result.best_dice == top["val_dice"]
    assert _same(best["state_dict"], _weights(tmp_path / f"epoch{top['epoch']}.pt"))
    assert "best.pt stays epoch" in capsys.readouterr().out
