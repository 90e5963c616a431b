"""Code competitions: the kernel bundle, run as Kaggle runs it (offline, in a clean environment holding only Kaggle's
preinstalled packages, on a hidden test set of other names and another count), writes the same submission as the
pipeline's own predict and encode; its size, run time and wheels are checked before it goes; and the submit flow
against the Kaggle stand-in creates, waits, pushes, runs, shows a failure's log, submits once and resumes."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from pipeline import budget, runtime
from pipeline.competitions import competition_class
from pipeline.competitions.base import KernelLimits
from pipeline.competitions.carvana import Carvana
from pipeline.competitions.carvana import demo as carvana_demo
from pipeline.competitions.severstal import SLUG, Severstal
from pipeline.competitions.severstal import demo as severstal_demo
from pipeline.kaggle_api import KaggleError
from pipeline.kernels import bundle, environment, files, wheels
from pipeline.kernels import submit as kernel_submit
from pipeline.masks import recipe
from pipeline.prediction import predict
from pipeline.prediction.predictor import load_predictor
from pipeline.submission import encode
from tests.conftest import ROOT
from tests.kaggle_standin import StandIn

HERE = f"{sys.version_info.major}.{sys.version_info.minor}"
SIZE = (64, 320)  # Severstal's strips at a fifth


def package_params(**changes):
    from pipeline import params

    p = params.load("package", path=ROOT / "params.yaml")["package"]
    return params.replace(p, python=[HERE], check_images=4, **changes)


def hidden(comp, seed: int, count: int, prefix: str, root: Path):
    """A hidden test set the pipeline has never seen: rendered from another seed, `count` images under other names;
    (its sample submission, {name: bytes}); Severstal's truth, renamed too, in root/truth.csv."""
    generate = severstal_demo.generate if comp is Severstal else carvana_demo.generate
    kwargs = {"width": SIZE[1], "height": SIZE[0]} if comp is Severstal else {"width": 160, "height": 96}
    generate(root / "raw", root / "truth", seed=seed, train=2, test=1, jobs=1, **kwargs)
    opened = competition_class(comp.slug)(root / "raw")
    fmt = bundle.subset(opened.submission(), count)
    renamed = {n: f"{prefix}{i:03d}.jpg" for i, n in enumerate(fmt.images)}
    images = {renamed[n]: opened.read_test(n) for n in fmt.images}
    rows = tuple(
        tuple((c, tuple(field.replace(name, renamed[name]) for field in fields)) for c, fields in image_rows)
        for name, image_rows in zip(fmt.images, fmt.rows, strict=True)
    )
    if comp is Severstal:
        lines = (root / "truth" / severstal_demo.TRUTH).read_text().splitlines()
        kept = [line for line in lines[1:] if line.split(",")[0] in renamed]
        text = "\n".join([lines[0], *(renamed[line.split(",")[0]] + line[line.index(",") :] for line in kept)])
        (root / "truth.csv").write_text(text + "\n")
    return replace(fmt, images=tuple(renamed[n] for n in fmt.images), rows=rows), images


def own_submission(members, rules_recipe, comp, source, fmt, work: Path) -> Path:
    """The pipeline's own predict and encode (the stages' functions, in this process) on the same images."""
    (member,) = members
    rt = runtime.for_inference(member.amp)
    predictor = load_predictor(member.models, rt.device, rt.memory_format)
    predict.predict_test_set(
        predictor, source, list(fmt.images), work / "maps", competition=comp.slug, rt=rt, tta=member.tta,
        shard_size=500, batch_size=8, workers=0,
    )  # fmt: skip
    rules = recipe.rules(rules_recipe, predictor.classes)
    encode.write(work / "maps", comp, fmt, rules, work / "submission.csv", jobs=1)
    return work / "submission.csv"


@pytest.fixture(scope="module")
def steel_model(tmp_path_factory) -> Path:
    """A tiny Severstal model: one epoch on a small demo."""
    root = tmp_path_factory.mktemp("steel")
    severstal_demo.generate(
        root / "raw", root / "truth", seed=4, train=2, test=1, width=SIZE[1], height=SIZE[0], jobs=1
    )
    from pipeline import training
    from pipeline.competitions import open_competition
    from pipeline.data import split
    from tests.conftest import tiny_train_params

    comp = open_competition(root / "raw", SLUG)
    folds = split.split_competition(comp, folds=2, seed=0, stratify=False, group="image")
    p = tiny_train_params(epochs=1, scale=0.25)
    training.train_fold(p, training.setup(p), comp, folds, 0, root / "models/fold0", progress=False)
    return root / "models/fold0/best.pt"


RULES = {"rules": [{"threshold": t, "min_area": a} for t, a in ((0.4, 0), (0.5, 30), (0.45, 0), (0.6, 10))]}


@pytest.fixture(scope="module")
def steel_bundle(steel_model, tmp_path_factory) -> tuple[Path, list]:
    out = tmp_path_factory.mktemp("steel-bundle") / "package"
    members = [bundle.Member("models", 1.0, "hflip", True, [steel_model])]
    cache = tmp_path_factory.mktemp("wheel-cache")
    predict_values = {"shard_size": 500, "batch_size": 8, "workers": 0}
    bundle.write(out, Severstal, members, RULES, predict_values, package_params(), ROOT, cache)
    return out, members


def test_the_bundle_holds_what_kaggle_needs_and_nothing_of_this_machine(steel_bundle):
    out, _ = steel_bundle
    metadata = json.loads((out / "kernel/kernel-metadata.json").read_text())
    assert metadata["enable_internet"] is False and metadata["competition_sources"] == [SLUG]
    assert metadata["kernel_type"] == "script" and metadata["language"] == "python" and metadata["is_private"]
    assert metadata["dataset_sources"] == [f"{files.OWNER}/kseg-severstal-steel-defect-detection"]
    spec = json.loads((out / "dataset/bundle.json").read_text())
    assert spec["members"][0]["models"] == ["models/fold0/best.pt"] and spec["recipe"] == RULES
    names = {w.split("-")[0].lower() for w in spec["wheels"]}
    assert {"kaggle_segmentation", "segmentation_models_pytorch", "timm", "pydantic"} <= names
    assert not names & {"torch", "torchvision", "numpy", "pandas", "pillow", "scipy", "dvc", "dvclive", "kaggle"}
    script = (out / "kernel/kernel.py").read_text()
    assert "--no-index" in script and str(ROOT) not in script and "/kaggle/" in script
    before = files.sha256(out)
    meta = out / "dataset/dataset-metadata.json"
    meta.write_text(meta.read_text().replace(files.OWNER, "someone"))
    assert files.sha256(out) == before  # the owner's name is not part of what is submitted


@pytest.mark.parametrize("competition", ["severstal", "carvana"])
def test_the_kernel_offline_on_a_hidden_test_set_writes_the_pipeline_s_own_submission(
    competition, steel_bundle, tiny_model, tmp_path
):
    if competition == "severstal":
        out, members = steel_bundle
        comp, place, rules = Severstal, None, RULES
    else:  # Carvana takes files; submit.via kernel makes a kernel of it all the same
        comp, place, rules = Carvana, "test.zip", {"threshold": 0.5}
        members = [bundle.Member("models", 1.0, "none", True, [tiny_model])]
        out = tmp_path / "package"
        predict_values = {"shard_size": 500, "batch_size": 8, "workers": 0}
        bundle.write(out, comp, members, rules, predict_values, package_params(), ROOT, tmp_path / "cache")
    fmt, images = hidden(comp, seed=99, count=11, prefix="hidden_", root=tmp_path / "hidden")
    submission, seconds, offline = bundle.try_offline(out, comp, fmt, images, tmp_path / "kaggle-run", place)
    assert offline == bool(bundle.network_namespace())  # without a network wherever the machine allows a namespace
    env = tmp_path / "kaggle-run/env"
    where = subprocess.run([str(env / "bin/python"), "-c", "import pipeline; print(pipeline.__file__)"],
                           capture_output=True, text=True, env={}, cwd=tmp_path).stdout  # fmt: skip
    assert where.startswith(str(env)) and str(ROOT) not in where  # the bundle's wheel ran, not this checkout

    source_dir = tmp_path / "own"
    comp.write_kernel_inputs(source_dir, fmt, images, place)
    source, own_fmt = comp.kernel_inputs(source_dir, tmp_path / "own-work")
    ours = own_submission(members, rules, comp, source, own_fmt, tmp_path / "own-work")
    kernel_rows = encode.read_rows(submission)
    assert kernel_rows == encode.read_rows(ours)  # the same masks, row for row
    assert len(kernel_rows[1]) == 11 * (4 if comp is Severstal else 1)
    assert all(r[0].startswith("hidden_") for r in kernel_rows[1])


def test_size_time_and_wheels_are_checked_before_anything_goes(steel_bundle, steel_model, tmp_path, monkeypatch):
    out, _ = steel_bundle
    with pytest.raises(bundle.PackageError, match=r"over Kaggle's 1e-05 GB \(package.max_gb\)"):
        bundle.check_size(out, 1e-5)
    assert bundle.check_size(out, 1) == files.size(out)

    predictor = load_predictor([steel_model])
    rules = recipe.rules(RULES, 4)
    opened = competition_class(SLUG)
    data = budget.Data(12_568, 5_506, (256, 1600), 3, 4, "Severstal", None)
    cost = budget.kernel_cost(opened, data, lambda x: predictor(x, "hflip"), predictor.pre, True, rules)
    assert cost.images == 5_506 and cost.gpu_s > budget.KERNEL_START_S and cost.cpu_s > budget.KERNEL_START_S
    assert "GPU ~" in bundle.check_time(cost, Severstal.kernel_limits, gpu=True)
    with pytest.raises(bundle.PackageError) as err:
        bundle.check_time(cost, KernelLimits(cpu_hours=0.01, gpu_hours=0.01), gpu=False)
    assert "over the competition's 36 s" in str(err.value) and "package.gpu true" in str(err.value)

    empty = tmp_path / "index"  # a package index without the wheels that Kaggle's Python needs
    empty.mkdir()
    monkeypatch.setenv("PIP_INDEX_URL", empty.as_uri())
    own = wheels.build_own(ROOT, tmp_path / "own")
    target = wheels.Target("3.12", "manylinux_2_35_x86_64")
    with pytest.raises(wheels.WheelError, match=r"no wheel of pydantic.core==\S+ for Python 3.12 on manylinux_2_35"):
        wheels.gather(own, [target], package_params().preinstalled, [], tmp_path / "cache", tmp_path / "out")


def test_a_kernel_without_a_package_it_imports_fails_at_package_time_with_the_fix(steel_bundle, tmp_path):
    out, _ = steel_bundle
    fmt, images = hidden(Severstal, seed=98, count=2, prefix="x", root=tmp_path / "hidden")
    spec_path = out / "dataset/bundle.json"
    spec = json.loads(spec_path.read_text())
    try:  # Kaggle's image assumed to hold scipy, which it would not: the kernel cannot import it
        spec_path.write_text(json.dumps({**spec, "preinstalled": [p for p in spec["preinstalled"] if p != "scipy"]}))
        with pytest.raises(bundle.PackageError) as err:
            bundle.try_offline(out, Severstal, fmt, images, tmp_path / "run")
    finally:
        spec_path.write_text(json.dumps(spec, indent=2) + "\n")
    assert "scipy" in str(err.value) and "package.preinstalled" in str(err.value)


@pytest.fixture
def standin(tmp_path, monkeypatch):
    """The stand-in as Kaggle for a code competition: Severstal with a hidden test set, kernels run in a clean
    environment of Kaggle's preinstalled packages."""
    fmt, images = hidden(Severstal, seed=97, count=6, prefix="h", root=tmp_path / "hidden")
    Severstal.write_kernel_inputs(tmp_path / "mount", fmt, images)
    truth = tmp_path / "hidden" / "truth.csv"
    target = wheels.Target(HERE, "manylinux_2_35_x86_64")
    python = environment.create(tmp_path / "kaggle-image", package_params().preinstalled, [target])
    server = StandIn(
        {SLUG: {}}, code_competitions={SLUG}, kernel_inputs={SLUG: tmp_path / "mount"}, kernel_python=str(python),
        truth={SLUG: (truth, SIZE)},
    ).start()  # fmt: skip
    for key, value in {"HTTP_PROXY": server.proxy, "KAGGLE_USERNAME": "tester", "KAGGLE_KEY": "secret-key"}.items():
        monkeypatch.setenv(key, value)
    yield server
    server.stop()


def _calls(server) -> list[str]:
    return [r["path"].rsplit("/", 1)[-1] for r in server.log if r["method"] == "POST"]


def test_the_submit_flow_creates_waits_pushes_runs_and_submits_once(standin, steel_bundle, tmp_path):
    out, _ = steel_bundle
    sha = files.sha256(out)
    args = dict(note="", key_params={"tta": "hflip"}, owner="", history=tmp_path / "history.jsonl",
                state_path=tmp_path / "state.json", work=tmp_path / "work", force=False, poll=0.2)  # fmt: skip
    receipt = kernel_submit.submit(SLUG, out, sha, wait=300, **args)
    assert receipt["submitted"] and receipt["kernel"] == "tester/kseg-severstal-steel-defect-detection-kernel"
    calls = _calls(standin)
    assert calls.index("CreateDataset") < calls.index("SaveKernel") < calls.index("CreateCodeSubmission")
    statuses = [r for r in standin.log if r["path"].endswith("GetDatasetStatus")]
    assert len(statuses) >= 2  # the kernel waited for the dataset to be processed
    (version,) = standin.kernels["tester/kseg-severstal-steel-defect-detection-kernel"]["versions"]
    assert version["metadata"]["enableInternet"] is False and version["status"] == "COMPLETE"
    assert b"h000.jpg" in version["outputs"]["submission.csv"]  # the hidden test set, predicted on "Kaggle"
    scored = standin.submissions[-1]
    assert scored["description"].startswith(f"sha256:{sha[:12]}") and float(scored["publicScore"]) >= 0
    assert not (tmp_path / "state.json").exists()

    again = kernel_submit.submit(SLUG, out, sha, wait=300, **args)  # the same bundle: refused, nothing pushed
    assert not again["submitted"] and "already submitted" in again["reason"]
    assert _calls(standin).count("SaveKernel") == 1


def test_an_interrupted_submit_resumes_without_a_second_push_and_a_failure_shows_the_log(
    standin, steel_bundle, tmp_path
):
    out, _ = steel_bundle
    sha = files.sha256(out)
    args = dict(note="", key_params={}, owner="", history=tmp_path / "h.jsonl", state_path=tmp_path / "state.json",
                work=tmp_path / "work", force=False, poll=0.2)  # fmt: skip
    with pytest.raises(KaggleError, match="still (queued|running) after .* does not push another"):
        kernel_submit.submit(SLUG, out, sha, wait=1.5, **args)  # cut short while Kaggle runs the kernel
    assert json.loads((tmp_path / "state.json").read_text())["kernel_version"] == 1
    receipt = kernel_submit.submit(SLUG, out, sha, wait=300, **args)
    assert receipt["submitted"] and _calls(standin).count("SaveKernel") == 1
    assert _calls(standin).count("CreateDataset") == 1 and "CreateDatasetVersion" not in _calls(standin)

    standin.kernel_seconds = 0.5  # the next run outlives Kaggle's limit
    with pytest.raises(KaggleError) as err:
        kernel_submit.submit(SLUG, out, sha, wait=300, **{**args, "force": True})
    text = str(err.value)
    assert "failed on Kaggle (Notebook Timeout" in text and "ran out of time" in text
    assert "CreateDatasetVersion" in _calls(standin)  # a new version, once the last one was processed

    with pytest.raises(KaggleError, match="package.owner is someone, but the Kaggle credentials are tester's"):
        kernel_submit.submit(SLUG, out, sha, wait=300, **{**args, "owner": "someone", "force": True})


def test_a_file_for_a_code_competition_is_refused_by_the_standin_as_by_kaggle(standin, tmp_path):
    from pipeline.kaggle_api import submissions

    (tmp_path / "s.csv").write_text("ImageId,EncodedPixels,ClassId\n")
    with pytest.raises(KaggleError, match="Code Competition"):
        submissions.submit(SLUG, tmp_path / "s.csv", "a file")
    refused = str(kernel_submit.refuse_file(SLUG))
    assert "code competition" in refused and "submit.via" in refused


def test_competitions_say_how_they_are_submitted_and_their_limits():
    assert Carvana.submission_way == "file" and Severstal.submission_way == "kernel"
    assert Severstal.kernel_limits == KernelLimits(cpu_hours=1, gpu_hours=1)
    assert Carvana.kernel_limits.gpu_hours == 12  # a notebook session's, for submit.via kernel
