"""Submitting with the real kaggle client against the stand-in: once per file, receipts, scores, errors."""

from __future__ import annotations

import json

import pytest

from pipeline import kaggle_api
from pipeline.competitions.carvana import Carvana
from pipeline.kaggle_api import submissions
from pipeline.submission import encode, upload
from tests.conftest import carvana, copy_project, run
from tests.kaggle_standin import StandIn

SLUG = "carvana-image-masking-challenge"


def _truth(raw_root):
    return raw_root.parent / "truth" / "test_masks.csv", (96, 160)


@pytest.fixture
def standin(tiny_demo, monkeypatch):
    server = StandIn({SLUG: {}, "closed": {}}, rules_not_accepted={"closed"}, truth={SLUG: _truth(tiny_demo)}).start()
    monkeypatch.setenv("HTTP_PROXY", server.proxy)
    monkeypatch.setenv("KAGGLE_USERNAME", "tester")
    monkeypatch.setenv("KAGGLE_KEY", "secret-key")
    yield server
    server.stop()


def test_a_file_is_submitted_once_with_a_descriptive_message(standin, tiny_submission, tmp_path):
    history = tmp_path / "history.jsonl"
    first = upload.submit_once(SLUG, tiny_submission, "my note", {"arch": "unet"}, history, force=False)
    assert first["submitted"] and first["ref"] == 1000
    message = standin.submissions[0]["description"]
    assert message.startswith(f"sha256:{first['sha256'][:12]} | commit ") and message.endswith("arch=unet | my note")
    again = upload.submit_once(SLUG, tiny_submission, "my note", {}, history, force=False)
    assert not again["submitted"] and "already submitted (ref 1000)" in again["reason"]
    history.unlink()  # a lost local history: the competition's own list still knows the file
    again = upload.submit_once(SLUG, tiny_submission, "", {}, history, force=False)
    assert not again["submitted"] and len(standin.submissions) == 1
    forced = upload.submit_once(SLUG, tiny_submission, "", {}, history, force=True)
    assert forced["submitted"] and len(standin.submissions) == 2


def test_a_long_note_and_a_lost_reply_still_mean_one_upload(standin, tiny_submission, tmp_path):
    standin.lost_replies = 1
    note = "ten kilobytes of notes " * 450
    with pytest.raises(kaggle_api.KaggleError, match="the upload may not have completed"):
        upload.submit_once(SLUG, tiny_submission, note, {"arch": "unet"}, tmp_path / "h.jsonl", force=False)
    assert len(standin.submissions) == 1 and not (tmp_path / "h.jsonl").exists()  # Kaggle has it, we never heard
    description = standin.submissions[0]["description"]
    assert len(description) == upload.DESCRIPTION_LIMIT and description.startswith("sha256:")
    again = upload.submit_once(SLUG, tiny_submission, note, {"arch": "unet"}, tmp_path / "h.jsonl", force=False)
    assert not again["submitted"] and "already submitted (ref 1000)" in again["reason"]
    assert len(standin.submissions) == 1


def test_the_score_is_the_carvana_dice_of_the_file(standin, tiny_demo, tiny_submission, tmp_path):
    upload.submit_once(SLUG, tiny_submission, "", {}, tmp_path / "h.jsonl", force=False)
    rows = submissions.submissions(SLUG)
    rows = submissions.submissions(SLUG)  # the stand-in scores on the second look, like a queue
    expected = Carvana.score(tiny_submission, *_truth(tiny_demo))
    assert rows[0]["status"] == "COMPLETE" and float(rows[0]["public_score"]) == pytest.approx(expected, abs=1e-5)


def test_carvana_submissions_waits_for_the_score_and_records_it_in_the_receipt(standin, tiny_submission, tmp_path):
    receipt = upload.submit_once(SLUG, tiny_submission, "", {}, tmp_path / "h.jsonl", force=False)
    (tmp_path / "submissions").mkdir()
    (tmp_path / "submissions/receipt.json").write_text(json.dumps(receipt))  # as the submit stage left it
    proc = carvana("submissions", "-c", SLUG, "--wait", "--poll", "0", cwd=tmp_path)
    assert "waiting for Kaggle" in proc.stdout and "COMPLETE" in proc.stdout and "1000" in proc.stdout
    recorded = json.loads((tmp_path / "submissions/receipt.json").read_text())
    listed = submissions.submissions(SLUG)[0]
    assert recorded["ref"] == listed["ref"] and recorded["public_score"] == float(listed["public_score"])
    assert recorded["private_score"] == float(listed["private_score"]) and recorded["status"] == "COMPLETE"
    assert f"public score {recorded['public_score']}" in proc.stdout


def test_errors_name_the_fix(standin, tiny_submission, tmp_path, monkeypatch):
    with pytest.raises(kaggle_api.KaggleError, match="accept the rules of closed"):
        upload.submit_once("closed", tiny_submission, "", {}, tmp_path / "h.jsonl", force=True)
    standin.daily_limit = 0
    with pytest.raises(kaggle_api.KaggleError, match="daily submission allowance resets at 00:00 UTC"):
        upload.submit_once(SLUG, tiny_submission, "", {}, tmp_path / "h.jsonl", force=True)
    monkeypatch.delenv("KAGGLE_KEY")
    with pytest.raises(kaggle_api.KaggleError, match="no Kaggle credentials found"):
        upload.submit_once(SLUG, tiny_submission, "", {}, tmp_path / "h.jsonl", force=True)


@pytest.mark.slow
def test_the_submit_stage_under_dvc(tiny_project, tmp_path):
    project = copy_project(tiny_project, tmp_path / "p")
    receipt = json.loads((project / "submissions/receipt.json").read_text())
    assert receipt["submitted"] is False and receipt["reason"] == "submit.sha256 is empty: nothing to upload"
    sha = receipt["sha256"][:12]
    slug = "carvana-image-masking-challenge"  # the project's own: nothing reruns before submit
    server = StandIn({slug: {}}, truth={slug: (project / "data/demo-truth/test_masks.csv", (96, 160))}).start()
    env = {
        "KAGGLE_API_ENVIRONMENT": "LOCALHOST",
        "HTTP_PROXY": server.proxy,
        "NO_PROXY": "",
        "KAGGLE_USERNAME": "tester",
        "KAGGLE_KEY": "secret-key",
    }
    try:
        out = run(
            ["dvc", "exp", "run", "-n", "up", "-S", f"submit.sha256={sha}", "-S", "submit.message=first try",
             "-S", "submit.wait=0"],
            project,
            env,
        ).stdout  # fmt: skip
        receipt = json.loads((project / "submissions/receipt.json").read_text())
        assert receipt["submitted"] and receipt["ref"] == 1000
        assert receipt["public_score"] is None and "`kseg submissions --wait` records the score" in out, out
        # the score comes later: `kseg submissions --wait` records it, and the ledger shows it beside the Dice
        assert "public score" in run(["carvana", "submissions", "--wait", "--poll", "0"], project, env).stdout
        receipt = json.loads((project / "submissions/receipt.json").read_text())
        truth = (project / "data/demo-truth/test_masks.csv", (96, 160))
        score = Carvana.score(project / "submissions/submission.csv.gz", *truth)
        assert receipt["status"] == "COMPLETE" and receipt["public_score"] == pytest.approx(score, abs=1e-5)
        shown = json.loads(run(["dvc", "exp", "show", "--json"], project).stdout)
        workspace = shown[0]["data"]["metrics"]
        assert workspace["submissions/receipt.json"]["data"]["public_score"] == receipt["public_score"]
        assert "dice" in workspace["reports/evaluate/metrics.json"]["data"]
        assert receipt["message"].startswith(f"sha256:{sha} | commit")
        assert receipt["message"].endswith(" | first try")
        assert "secret-key" not in (project / "dvc.lock").read_text() + json.dumps(receipt)
        run(["dvc", "repro", "-f", "-s", "submit"], project, env)  # a forced rerun of the stage: not resubmitted
        assert len(server.submissions) == 1, [(s["description"], s["size"]) for s in server.submissions]
        receipt = json.loads((project / "submissions/receipt.json").read_text())
        assert "already submitted" in receipt["reason"] and receipt["public_score"] == pytest.approx(score, abs=1e-5)
        # the accident: submit.sha256 stays in params.yaml, and an unrelated change makes another file
        run(["dvc", "exp", "run", "-S", "encode.threshold=0.3"], project, env)
        receipt = json.loads((project / "submissions/receipt.json").read_text())
        assert receipt["submitted"] is False and f"submit.sha256 names {sha}, but" in receipt["reason"]
        assert len(server.submissions) == 1
    finally:
        server.stop()
    for code in encode.read(project / "submissions/submission.csv.gz").values():
        Carvana.dialect.pairs(code, (96, 160))  # raises on a malformed RLE


def test_a_failed_upload_speaks_of_the_upload(standin, tiny_submission, tmp_path):
    standin.server_errors[:] = [503] * 5
    with pytest.raises(kaggle_api.KaggleError) as err:
        upload.submit_once(SLUG, tiny_submission, "", {}, tmp_path / "h.jsonl", force=True)
    assert "HTTP 503" in str(err.value) and "the upload may not have completed" in str(err.value)
    assert "partial downloads" not in str(err.value) and not (tmp_path / "h.jsonl").exists()


def test_a_local_set_without_test_images_offers_no_upload_and_submits_nothing(tmp_path):
    """Images and masks of one's own, no test folder: encode writes the header alone and says there is nothing to
    submit; the submit stage refuses that file before any request."""
    import sys

    import numpy as np
    from PIL import Image

    from pipeline import params
    from pipeline.download import sources
    from pipeline.planning import resolve
    from pipeline.prediction import shards
    from pipeline.provenance import file_hash
    from tests.conftest import edit_yaml, make_project

    mine = tmp_path / "mine"
    for folder in ("imgs", "masks"):
        (mine / folder).mkdir(parents=True)
    for k in range(4):
        Image.fromarray(np.full((16, 24, 3), 40 * k, np.uint8)).save(mine / "imgs" / f"a{k}.png")
        Image.fromarray((np.arange(16 * 24).reshape(16, 24) % 3 == 0).astype(np.uint8) * 255).save(
            mine / "masks" / f"a{k}_mask.png"
        )

    def local(d):
        d["download"].update(source="local", competition="my-cells")
        d["download"]["local"].update(path=str(mine), layout="folder-pairs", test_images="")
        d["encode"]["threshold"] = 0.5

    project = make_project(tmp_path / "p", local)
    p = params.load("download", path=project / "params.yaml")["download"]
    sources.fetch(p, project / "data/raw", project / "data/demo-truth")
    shards.prepare(project / "data/predictions", "none", 0, 4, 1, ["foreground"], (8, 12))
    (project / "data/plan").mkdir(parents=True)
    planned = {"train.scale": 0.5, "train.model.base_channels": 4, "train.batch_size": 2, "train.lr": 0.003,
               "train.epochs": 1, "train.bce_weight": 1.0, "train.dice_weight": 1.0, "train.augment.hflip": 0.5,
               "train.augment.vflip": 0.0, "train.augment.saturation": 0.0, "train.augment.hue": 0.0}  # fmt: skip
    (project / "data/plan/train.json").write_text(json.dumps(planned))
    (project / "data/plan/predict.json").write_text(json.dumps({"predict.tta": "none"}))
    assert set(planned) == set(resolve.STAGES["train"])

    out = run([sys.executable, "-m", "stages.encode"], project).stdout
    assert "no rows" in out and "nothing to submit" in out and "to upload this file" not in out, out
    sha = file_hash(project / "submissions/submission.csv.gz")[:12]
    edit_yaml(project / "params.yaml", lambda d: d["submit"].update(sha256=sha))
    proc = run([sys.executable, "-m", "stages.submit"], project, check=False)
    assert proc.returncode == 1 and "has no rows (the data has no test images): nothing to submit" in proc.stderr
    assert "Traceback" not in proc.stderr and not (project / "submissions/history.jsonl").exists()
