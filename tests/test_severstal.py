"""Severstal's competition module and its demo: the files Kaggle serves, both CSV layouts of the competition, labels
as bit masks of four classes decoded column-major, the submission in the sample's exact rows, Kaggle's metric."""

from __future__ import annotations

import gzip
import zipfile

import numpy as np
import pandas as pd
import pytest

from pipeline.competitions import CompetitionError, competition_class, open_competition
from pipeline.competitions.severstal import SLUG, ZIP, Severstal, demo, read_labels, sample_format
from pipeline.masks.rle import DIALECTS
from tests.conftest import replace_member, upside_down

SIZE = (64, 400)  # (height, width): a quarter of Severstal's 256x1600


@pytest.fixture(scope="module")
def steel(tmp_path_factory):
    root = tmp_path_factory.mktemp("severstal")
    demo.generate(root / "raw", root / "truth", seed=3, train=3, test=1, width=SIZE[1], height=SIZE[0], jobs=1)
    return root / "raw"


def test_the_slug_picks_the_module_and_an_unknown_local_slug_is_the_generic_folder():
    assert competition_class(SLUG) is Severstal and competition_class("my-subset").__name__ == "Folder"


def test_the_demo_serves_kaggle_s_files_and_names(steel):
    assert sorted(p.name for p in steel.iterdir()) == sorted([ZIP, "train.csv", "sample_submission.csv"])
    with zipfile.ZipFile(steel / ZIP) as z:
        names = z.namelist()
    assert {n.split("/")[0] for n in names} == {"train_images", "test_images", "train.csv", "sample_submission.csv"}
    comp = open_competition(steel, SLUG)
    assert comp.verify() == {"train": 48, "test": 16}
    assert all(len(n) == 13 and n.endswith(".jpg") for n in comp.train_names)  # 9 hex digits, like 0002cc93b.jpg
    train = pd.read_csv(steel / "train.csv")
    assert list(train.columns) == ["ImageId", "ClassId", "EncodedPixels"] and set(train["ClassId"]) <= {1, 2, 3, 4}
    sample = pd.read_csv(steel / "sample_submission.csv")
    assert list(sample.columns) == ["ImageId", "EncodedPixels", "ClassId"] and len(sample) == 16 * 4


def test_some_strips_hold_no_defect_some_two_kinds_and_about_half_the_pairs_are_empty(tmp_path):
    demo.generate(tmp_path / "raw", tmp_path / "truth", seed=5, train=6, test=1, width=400, height=64, jobs=1)
    labels = read_labels(tmp_path / "raw/train.csv")
    comp = open_competition(tmp_path / "raw", SLUG)
    kinds = [len(labels.get(n, {})) for n in comp.train_names]
    assert 0 in kinds and 2 in kinds and max(kinds) <= 3
    empty = 1 - sum(kinds) / (4 * len(kinds))
    assert 0.4 < empty < 0.6, empty  # so that an all-empty submission scores about 0.5


def test_the_same_seed_gives_the_same_bytes(steel, tmp_path):
    demo.generate(tmp_path / "raw", tmp_path / "truth", seed=3, train=3, test=1, width=SIZE[1], height=SIZE[0], jobs=2)
    for name in (ZIP, "train.csv", "sample_submission.csv"):
        assert (tmp_path / "raw" / name).read_bytes() == (steel / name).read_bytes(), name


def test_masks_are_bits_of_the_four_classes_decoded_column_major(steel):
    comp = open_competition(steel, SLUG)
    labels = read_labels(steel / "train.csv")
    name = next(n for n in comp.train_names if len(labels.get(n, {})) >= 2)
    mask = comp.read_mask(name)
    assert mask.shape == SIZE and mask.dtype == np.uint8 and comp.labels == "multilabel" and comp.channels == 4
    for c, code in labels[name].items():
        assert np.array_equal((mask >> (c - 1)) & 1, DIALECTS["severstal"].decode(code, SIZE))
    assert comp.mask_areas([name])[0] > 0


def test_the_old_layout_of_the_competition_reads_the_same(steel, tmp_path):
    new = pd.read_csv(steel / "train.csv", dtype=str)
    rows = {(n, int(c)): p for n, c, p in new.values}
    images = sorted({n for n, _ in rows})
    old = pd.DataFrame(
        [(f"{n}_{c}", rows.get((n, c), "")) for n in images for c in range(1, 5)],
        columns=["ImageId_ClassId", "EncodedPixels"],
    )
    old.to_csv(tmp_path / "train.csv", index=False)
    assert read_labels(tmp_path / "train.csv") == read_labels(steel / "train.csv")
    sample = pd.read_csv(steel / "sample_submission.csv", dtype=str)
    first = sample[["ImageId", "ClassId"]].apply(lambda r: f"{r.ImageId}_{r.ClassId}", axis=1)
    pd.DataFrame({"ImageId_ClassId": first, "EncodedPixels": "1 1"}).to_csv(tmp_path / "old.csv", index=False)
    old_format, new_format = sample_format(tmp_path / "old.csv"), sample_format(steel / "sample_submission.csv")
    assert old_format.images == new_format.images and old_format.header == "ImageId_ClassId,EncodedPixels\n"
    assert old_format.lines(0, {0: "1 2", 1: "", 2: "", 3: ""})[0] == f"{old_format.images[0]}_1,1 2\n"
    assert new_format.lines(0, {0: "1 2", 1: "", 2: "", 3: ""})[0] == f"{new_format.images[0]},1 2,1\n"


def test_bad_files_are_named(steel, tmp_path):
    (tmp_path / "bad").mkdir()
    for name in (ZIP, "train.csv", "sample_submission.csv"):
        (tmp_path / "bad" / name).write_bytes((steel / name).read_bytes())
    train = pd.read_csv(steel / "train.csv", dtype=str)
    broken = train.copy()
    broken.loc[0, "EncodedPixels"] = "5 3 4 1"
    broken.to_csv(tmp_path / "bad/train.csv", index=False)
    with pytest.raises(
        CompetitionError, match=f"train.csv, row {train['ImageId'][0]} class {train['ClassId'][0]}: RLE"
    ):
        open_competition(tmp_path / "bad", SLUG).verify()
    broken = train.copy()
    broken.loc[0, "ClassId"] = "7"
    broken.to_csv(tmp_path / "bad/train.csv", index=False)
    with pytest.raises(CompetitionError, match="class '7' is not one of 1..4"):
        open_competition(tmp_path / "bad", SLUG).verify()
    train.to_csv(tmp_path / "bad/train.csv", index=False)
    sample = pd.read_csv(steel / "sample_submission.csv", dtype=str)
    split = pd.concat([sample.drop(index=1), sample.iloc[[1]]])  # the first image's class 2 moved to the end
    split.to_csv(tmp_path / "bad/sample_submission.csv", index=False)
    with pytest.raises(CompetitionError, match="lists .* in two places; the rows of an image must be together"):
        open_competition(tmp_path / "bad", SLUG).verify()


def test_labels_are_checked_as_kaggle_s_own_files_would_be(steel, tmp_path):
    import io
    import zipfile

    from PIL import Image

    bad = tmp_path / "bad"
    bad.mkdir()
    for name in (ZIP, "train.csv", "sample_submission.csv"):
        (bad / name).write_bytes((steel / name).read_bytes())
    train = pd.read_csv(steel / "train.csv", dtype=str)
    pd.concat([train, train.iloc[[0]]]).to_csv(bad / "train.csv", index=False)  # one (image, class) twice
    first = f"{train['ImageId'][0]} class {train['ClassId'][0]} is on lines 2 and {len(train) + 2}"
    with pytest.raises(CompetitionError, match=first):
        open_competition(bad, SLUG).verify()
    (bad / "train.csv").write_bytes(b"")
    with pytest.raises(CompetitionError, match=r"train.csv is empty \(0 bytes\): put the competition's own file"):
        open_competition(bad, SLUG).verify()
    (bad / "train.csv").write_bytes((steel / "train.csv").read_bytes())

    with zipfile.ZipFile(steel / ZIP) as z:  # one train image at half size, its name and its labels kept
        members = [(i, z.read(i)) for i in z.infolist()]
    odd = sorted(i.filename for i, _ in members if i.filename.startswith("train_images/"))[1]
    with zipfile.ZipFile(bad / ZIP, "w") as z:
        for info, data in members:
            if info.filename == odd:
                small = io.BytesIO()
                Image.open(io.BytesIO(data)).resize((SIZE[1] // 2, SIZE[0] // 2)).save(small, "JPEG")
                data = small.getvalue()
            z.writestr(info, data)
    with pytest.raises(CompetitionError, match=f"{odd} is {SIZE[1] // 2}x{SIZE[0] // 2}, the other images "
                       f"{SIZE[1]}x{SIZE[0]}"):  # fmt: skip
        open_competition(bad, SLUG).verify()

    original = next(data for info, data in members if info.filename == odd)
    replace_member(bad / ZIP, odd, upside_down(original))  # at its own size: its runs could be of either way
    shown = odd.split("/")[-1]
    with pytest.raises(CompetitionError, match=rf"{ZIP}: .*{shown} carries EXIF orientation 3: .*exif_transpose"):
        open_competition(bad, SLUG).verify()


def test_kaggle_s_metric_averages_every_image_and_class_pair(tmp_path):
    truth = tmp_path / "truth.csv"
    truth.write_text("ImageId,ClassId,EncodedPixels\na.jpg,1,1 4\na.jpg,3,5 2\n")
    sub = tmp_path / "sub.csv.gz"
    rows = ["ImageId,EncodedPixels,ClassId"] + [f"{n},{p},{c}" for n, c, p in [
        ("a.jpg", 1, "1 2"), ("a.jpg", 2, ""), ("a.jpg", 3, ""), ("a.jpg", 4, ""),
        ("b.jpg", 1, ""), ("b.jpg", 2, "1 1"), ("b.jpg", 3, ""), ("b.jpg", 4, ""),
    ]]  # fmt: skip
    sub.write_bytes(gzip.compress(("\n".join(rows) + "\n").encode()))
    expected = (2 * 2 / 6 + 1 + 0 + 1 + 1 + 0 + 1 + 1) / 8  # a1 partial, a3 missed, b2 extra; the rest empty both
    assert Severstal.score(sub, truth, (4, 5)) == pytest.approx(expected)


def test_a_folder_of_another_competition_is_named(steel, tiny_demo):
    with pytest.raises(CompetitionError, match=f"{ZIP} is missing; run `dvc repro download`"):
        open_competition(tiny_demo, SLUG)


def test_the_labels_are_the_zip_s_own_never_kept_for_a_date_unless_the_source_gives_them_beside_it(steel, tmp_path):
    """A local copy of Kaggle's one zip, swapped for one with other labels under the same names and an older date
    (`cp -p`, a download made earlier): data/raw's train.csv is the new zip's; one put beside the zip wins until it
    is taken away."""
    import os

    from pipeline import params
    from pipeline.download import sources
    from tests.conftest import ROOT

    src, raw = tmp_path / "kaggle", tmp_path / "raw"
    src.mkdir()
    (src / ZIP).write_bytes((steel / ZIP).read_bytes())  # the demo's zip holds its train.csv, as Kaggle's does
    p = params.load("download", path=ROOT / "params.yaml")["download"]
    local = params.replace(p.local, path=str(src), layout="kaggle")
    p = params.replace(p, source="local", competition=SLUG, local=local)
    sources.fetch(p, raw, tmp_path / "truth")
    assert (raw / "train.csv").read_bytes() == (steel / "train.csv").read_bytes()

    train = pd.read_csv(steel / "train.csv", dtype=str)
    swapped = train["ClassId"].map({"1": "2", "2": "1", "3": "4", "4": "3"})  # the same runs, other classes
    relabelled = train.assign(ClassId=swapped).to_csv(index=False)
    with zipfile.ZipFile(steel / ZIP) as z_in, zipfile.ZipFile(tmp_path / ZIP, "w") as z_out:
        for info in z_in.infolist():
            data = relabelled.encode() if info.filename == "train.csv" else z_in.read(info)
            z_out.writestr(info, data)
    os.replace(tmp_path / ZIP, src / ZIP)
    os.utime(src / ZIP, (1e9, 1e9))  # older than the train.csv extracted before
    sources.fetch(p, raw, tmp_path / "truth")
    assert (raw / "train.csv").read_text() == relabelled

    (src / "train.csv").write_bytes((steel / "train.csv").read_bytes())  # the source's own file, beside the zip
    sources.fetch(p, raw, tmp_path / "truth")
    assert (raw / "train.csv").read_bytes() == (steel / "train.csv").read_bytes()
    (src / "train.csv").unlink()
    sources.fetch(p, raw, tmp_path / "truth")
    assert (raw / "train.csv").read_text() == relabelled


def test_the_kaggle_source_fetches_the_competition_s_one_zip_from_the_standin(steel, tmp_path, monkeypatch):
    from pipeline import params
    from pipeline.download import sources
    from tests.conftest import ROOT
    from tests.kaggle_standin import StandIn, bundle_files

    server = StandIn({SLUG: bundle_files(steel / ZIP)}, bundles={SLUG: steel / ZIP}).start()
    monkeypatch.setenv("HTTP_PROXY", server.proxy)
    monkeypatch.setenv("KAGGLE_USERNAME", "tester")
    monkeypatch.setenv("KAGGLE_KEY", "secret-key")
    p = params.load("download", path=ROOT / "params.yaml")["download"]
    p = params.replace(p, source="kaggle", competition=SLUG)
    try:
        assert sources.fetch(p, tmp_path / "raw", tmp_path / "truth") == {"train": 48, "test": 16}
        calls = [r["path"].rsplit("/", 1)[-1] for r in server.log if r["method"] == "POST"]
        assert calls.count("DownloadDataFiles") == 1 and "DownloadDataFile" not in calls  # one zip, not 64 files
        assert (tmp_path / "raw" / ZIP).read_bytes() == (steel / ZIP).read_bytes()
        assert (tmp_path / "raw/train.csv").read_bytes() == (steel / "train.csv").read_bytes()  # unpacked beside
        server.log.clear()
        sources.fetch(p, tmp_path / "raw", tmp_path / "truth")  # complete: nothing fetched again
        assert not [r for r in server.log if r["path"].endswith(("DownloadDataFiles", "DownloadDataFile"))]
    finally:
        server.stop()


@pytest.mark.slow
def test_the_whole_pipeline_on_the_severstal_demo_under_dvc_to_a_kernel_submission(tiny_project, tmp_path):
    """Severstal is a code competition: its default DAG packages a kernel bundle, which the submit stage pushes and
    Kaggle (the stand-in) runs on the hidden test set; a CSV upload is refused before any request."""
    import json
    import sys

    from pipeline.kernels import environment, wheels
    from pipeline.submission import encode
    from tests.conftest import copy_project, edit_yaml, run
    from tests.kaggle_standin import StandIn

    project = copy_project(tiny_project, tmp_path / "p")
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    changes = {
        "download.competition": SLUG,
        "download.demo.width": SIZE[1],
        "download.demo.height": SIZE[0],
        "train.epochs": 2,
        "train.model.base_channels": 4,
        "package.python": f"['{here}']",  # this machine's: the tests cannot fetch Kaggle's 3.12 wheels
        "package.check_images": 4,
    }
    out = run(["dvc", "exp", "run", "-n", "steel", *[a for k, v in changes.items() for a in ("-S", f"{k}={v}")]],
              project).stdout  # fmt: skip
    assert "64 images of 64 images in 2 folds" in out  # grouped by image: Severstal's names say nothing more
    header, rows = encode.read_rows(project / "submissions/submission.csv.gz")
    sample = pd.read_csv(project / "data/raw/sample_submission.csv", dtype=str, keep_default_na=False)
    keys = list(zip(sample["ImageId"], sample["ClassId"], strict=True))
    assert header == list(sample.columns) and [(r[0], r[2]) for r in rows] == keys
    metrics = json.loads((project / "reports/evaluate/metrics.json").read_text())
    assert set(metrics["classes"]) == {"class_1", "class_2", "class_3", "class_4"} and 0.3 < metrics["all_empty"] < 0.7
    assert metrics["dice"] >= metrics["dice_without_area_rule"]
    score = Severstal.score(project / "submissions/submission.csv.gz", project / "data/demo-truth/test.csv", SIZE)
    assert 0.0 < score <= 1.0
    shown = json.loads(run(["dvc", "exp", "show", "--json"], project).stdout)
    assert '"all_empty"' in json.dumps(shown)

    assert "a kernel bundle of" in out and "tried on 4 test images in a clean environment" in out
    sha = (project / "data/package/SHA256").read_text().strip()
    image = environment.create(tmp_path / "kaggle-image", ["torch", "torchvision", "numpy", "pandas", "pillow",
                               "scipy"], [wheels.Target(here, "manylinux_2_35_x86_64")])  # fmt: skip
    public = open_competition(project / "data/raw", SLUG)  # Kaggle mounts test_images/ unzipped
    images = {name: public.read_test(name) for name in public.test_names}
    Severstal.write_kernel_inputs(tmp_path / "mount", public.submission(), images)
    server = StandIn(
        {SLUG: {}},
        code_competitions={SLUG},
        kernel_inputs={SLUG: tmp_path / "mount"},
        kernel_python=str(image),
        truth={SLUG: (project / "data/demo-truth/test.csv", SIZE)},
    ).start()
    env = {"KAGGLE_API_ENVIRONMENT": "LOCALHOST", "HTTP_PROXY": server.proxy, "NO_PROXY": "",
           "KAGGLE_USERNAME": "tester", "KAGGLE_KEY": "secret-key"}  # fmt: skip
    try:
        params = (project / "params.yaml").read_text()
        edit_yaml(project / "params.yaml", lambda d: d["submit"].update(via="file", sha256=sha[:12]))
        csv = run([sys.executable, "-m", "stages.submit"], project, env, check=False)  # the stage alone
        (project / "params.yaml").write_text(params)
        assert csv.returncode == 1 and "is a code competition" in csv.stderr and not server.log
        kernel = ["-S", f"submit.sha256={sha[:12]}", "-S", "submit.kernel_wait=120", "-S", "submit.wait=5"]
        out = run(["dvc", "exp", "run", *kernel, "submit"], project, env).stdout
        receipt = json.loads((project / "submissions/receipt.json").read_text())
        assert receipt["submitted"] and receipt["via"] == "kernel" and receipt["public_score"] is not None, out
        assert receipt["public_score"] == pytest.approx(score, abs=1e-5)  # Kaggle's rerun scores as the file did
    finally:
        server.stop()
