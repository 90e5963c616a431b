"""The download and split stages under real DVC: demo, Kaggle (via the stand-in) and a local folder."""

from __future__ import annotations

import io
import json
import shutil
import zipfile

import pandas as pd
import pytest
from PIL import Image

from pipeline import params
from pipeline.competitions import open_competition
from pipeline.download import sources
from tests.conftest import ROOT, make_project, run, small_demo, stages_run, tiny_pipeline
from tests.kaggle_standin import StandIn, kaggle_files

pytestmark = pytest.mark.slow  # runs dvc in a subprocess


def test_repro_split_runs_once_and_exp_run_changes_folds(tmp_path):
    project = make_project(tmp_path / "p", small_demo)
    out = run(["dvc", "repro", "split"], project).stdout
    assert "Running stage 'download'" in out and "Running stage 'split'" in out
    table = pd.read_csv(project / "data/split.csv")
    assert list(table.columns) == ["img", "group", "fold", "mask_area"] and len(table) == 96
    assert table.groupby("group")["fold"].nunique().max() == 1 and table["group"].nunique() == 6  # by car (auto)
    assert (project / "data/demo-truth/test_masks.csv").is_file()
    again = run(["dvc", "repro", "split"], project).stdout
    assert stages_run(again) == ["inputs"]
    run(["dvc", "exp", "run", "-S", "split.folds=4", "split"], project)
    assert sorted(pd.read_csv(project / "data/split.csv")["fold"].unique()) == [0, 1, 2, 3]


def test_kaggle_source_downloads_from_the_standin_through_dvc_exp_run(tmp_path, tiny_demo):
    project = make_project(tmp_path / "p", small_demo)
    server = StandIn({"carvana-image-masking-challenge": kaggle_files(tiny_demo)}, users={"tester": "k-7f3a9c"}).start()
    env = {
        "KAGGLE_API_ENVIRONMENT": "LOCALHOST",
        "HTTP_PROXY": server.proxy,
        "NO_PROXY": "",
        "KAGGLE_USERNAME": "tester",
        "KAGGLE_KEY": "k-7f3a9c",
    }
    try:
        proc = run(
            [
                "dvc",
                "exp",
                "run",
                "-S",
                "download.source=kaggle",
                "-S",
                "download.competition=carvana-image-masking-challenge",
                "split",
            ],
            project,
            env,
        )
    finally:
        server.stop()
    assert len(pd.read_csv(project / "data/split.csv")) == 48  # the stand-in's 3 cars, not the 6 of the demo
    assert json.loads((project / "data/raw/SOURCE.json").read_text())["source"] == "kaggle"
    downloads = [r["body"]["fileName"] for r in server.log if r["path"].endswith("/DownloadDataFile")]
    assert sorted(downloads) == sorted(
        [
            "train.zip",
            "train_masks.zip",
            "test.zip",
            "train_masks.csv.zip",
            "sample_submission.csv.zip",
            "metadata.csv.zip",
        ]
    )
    for path in [project / "dvc.lock", project / "params.yaml", project / "data/raw/SOURCE.json"]:
        assert "k-7f3a9c" not in path.read_text(), path
    assert "k-7f3a9c" not in proc.stdout + proc.stderr


def test_switching_away_from_a_kaggle_download_keeps_it_in_the_store(tmp_path, tiny_demo):
    project = make_project(tmp_path / "p", small_demo)
    raw = project / "data/raw"
    raw.mkdir(parents=True)
    (raw / "SOURCE.json").write_text(
        json.dumps({"source": "kaggle", "competition": "carvana-image-masking-challenge", "hq": False})
    )
    (raw / "train.zip").write_bytes(b"25 GB of somebody's download")  # made before the store existed
    run(["dvc", "repro", "download"], project, {"COMPETITIONS_STORE": ""})  # the demo: the default params
    kept = project / ".competitions/carvana-image-masking-challenge/train.zip"  # beside .dvc, ignored by git
    assert kept.read_bytes() == b"25 GB of somebody's download"
    assert json.loads((raw / "SOURCE.json").read_text())["source"] == "demo"
    assert ".competitions" not in run(["git", "status", "--porcelain"], project).stdout


def test_local_folder_of_kaggle_zips_is_linked_not_copied(tmp_path, tiny_demo):
    src = tmp_path / "kaggle"
    src.mkdir()
    for name, data in kaggle_files(tiny_demo).items():
        (src / name).write_bytes(data if isinstance(data, bytes) else data.read_bytes())

    def local(data):
        small_demo(data)
        data["download"]["source"] = "local"
        data["download"]["local"]["path"] = str(src)
        data["download"]["competition"] = "my-carvana-subset"  # not the real slug: no 5,088/100,064 counts

    project = make_project(tmp_path / "p", local)
    run(["dvc", "repro", "split"], project)
    assert (project / "data/raw/train.zip").stat().st_ino == (src / "train.zip").stat().st_ino
    assert len(pd.read_csv(project / "data/split.csv")) == 48


def test_local_folder_of_extracted_kaggle_files_is_packed(tmp_path, tiny_demo):
    src = tmp_path / "kaggle"
    for archive in ("train.zip", "train_masks.zip", "test.zip"):
        with zipfile.ZipFile(tiny_demo / archive) as z:
            z.extractall(src)
    for name in ("train_masks.csv", "sample_submission.csv", "metadata.csv"):
        (src / name).write_bytes((tiny_demo / name).read_bytes())
    p = params.load("download", path=ROOT / "params.yaml")["download"]
    p = params.replace(
        p, source="local", competition="subset", local=params.replace(p.local, path=str(src), layout="kaggle")
    )
    counts = sources.fetch(p, tmp_path / "raw", tmp_path / "truth")
    assert counts == {"train": 48, "test": 16}
    assert (
        open_competition(tmp_path / "raw", "subset").read_image(sorted((src / "train").iterdir())[0].name)
        == sorted((src / "train").iterdir())[0].read_bytes()
    )


def test_other_pixels_under_the_same_names_retrain_and_repredict(tmp_path, tiny_demo):
    src = tmp_path / "mine"
    shutil.copytree(tiny_demo, src)

    def local(d):
        tiny_pipeline(d)
        d["download"].update(source="local", competition="mine")
        d["download"]["local"].update(path=str(src), layout="kaggle")

    project = make_project(tmp_path / "p", local)
    run(["dvc", "repro"], project)
    before = (project / "submissions/submission.csv.gz").read_bytes()
    for archive in ("train.zip", "test.zip"):  # every picture darker, same names and sizes
        with zipfile.ZipFile(tiny_demo / archive) as z, zipfile.ZipFile(src / archive, "w") as out:
            for info in z.infolist():
                img = Image.open(io.BytesIO(z.read(info))).convert("RGB")
                buf = io.BytesIO()
                Image.eval(img, lambda v: v // 2).save(buf, "JPEG", quality=90)
                out.writestr(info.filename, buf.getvalue())
    out = run(["dvc", "repro"], project).stdout  # the folder's files are a dependency (data/inputs/download.json)
    assert stages_run(out)[:2] == ["inputs", "download"], out
    assert "comes from other params, data or code; training from scratch" in out
    assert "models or settings changed; the old shards were deleted" in out
    assert (project / "submissions/submission.csv.gz").read_bytes() != before
