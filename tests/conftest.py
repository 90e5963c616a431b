"""Shared fixtures. Before anything imports `kaggle`, point it at localhost and away from real files.

No test may reach the internet: HTTPS_PROXY points at a closed local port (so anything aimed at the
real Kaggle fails at once, in this process and in child processes such as `dvc exp run`), and the
`no_internet` fixture refuses any socket connection that is not to the loopback interface.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import socket
import subprocess
import tempfile
import zipfile
from pathlib import Path

import pytest
from PIL import Image
from ruamel.yaml import YAML

_HOME = tempfile.mkdtemp(prefix="carvana-test-home-")
os.environ.update(
    {
        "KAGGLE_API_ENVIRONMENT": "LOCALHOST",
        "HOME": _HOME,
        "KAGGLE_CONFIG_DIR": os.path.join(_HOME, ".kaggle"),
        "HTTPS_PROXY": "http://127.0.0.1:9",  # discard port: nothing listens, so https fails fast
        "https_proxy": "http://127.0.0.1:9",
        "NO_PROXY": "",
        "no_proxy": "",
        "DVC_NO_ANALYTICS": "1",
        "DVC_SITE_CACHE_DIR": os.path.join(_HOME, "dvc-site-cache"),
    }
)
for _key in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN", "HTTP_PROXY", "http_proxy"):
    os.environ.pop(_key, None)
if os.environ.get("PYTEST_XDIST_WORKER"):  # parallel workers: one torch thread each, in their stages too
    os.environ.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")

ROOT = Path(__file__).resolve().parents[1]
ISBI = ROOT.parent / "shared" / "data" / "isbi2012-membrane"


# the slowest modules, slowest first (seconds measured with two workers): the workers take them first and the
# short tests fill the end, so that neither waits for the other at the end of the run
HEAVY = ("test_end_to_end", "test_dvc_train", "test_dvc_sharing", "test_dvc_predict", "test_severstal",
         "test_dvc_data", "test_kernels", "test_pseudo", "test_planning", "test_training", "test_submit",
         "test_gpu_check")  # fmt: skip


def pytest_collection_modifyitems(items) -> None:
    """The slow tests first, the heaviest modules first among them; the rest in their order."""

    def weight(item) -> tuple[int, int]:
        module = item.module.__name__.rsplit(".", 1)[-1]
        rank = HEAVY.index(module) if module in HEAVY else len(HEAVY)
        return (item.get_closest_marker("slow") is None, rank)

    items.sort(key=weight)


def _is_loopback(address) -> bool:
    if isinstance(address, tuple) and address:
        host = address[0]
        return host in ("localhost", "::1") or str(host).startswith("127.")
    return True  # unix sockets


@pytest.fixture(autouse=True)
def own_store(monkeypatch, tmp_path):
    """Kaggle downloads go to this test's own store (pipeline/download/store.py), never the checkout's."""
    monkeypatch.setenv("COMPETITIONS_STORE", str(tmp_path / "competitions-store"))


@pytest.fixture(autouse=True)
def no_internet(monkeypatch):
    """Refuse every non-loopback connection made by this process."""
    real_connect = socket.socket.connect

    def guarded(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address):
            raise ConnectionRefusedError(f"tests may not leave the machine (tried {address})")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory) -> Path:
    """A small demo competition (3 train cars, 1 test car, 160x96 pixels) in Kaggle's layout."""
    from pipeline.competitions.carvana import demo

    root = tmp_path_factory.mktemp("tiny-demo")
    demo.generate(root / "raw", root / "truth", seed=7, train=3, test=1, width=160, height=96, jobs=1)
    return root / "raw"


_ANYWHERE = shutil.ignore_patterns(".git", ".venv", "__pycache__", "*.egg-info", ".pytest_cache")
_OUTPUTS = {"data", "models", "dvclive", "reports", "submissions", "checkpoints"}
_DVC_STATE = {"cache", "tmp", "config.local"}  # DVC's run-cache would restore outputs instead of running the code


def _copy_ignore(folder: str, names: list[str]) -> set[str]:
    """What a project copy leaves out: caches anywhere, the stage outputs at its root (not pipeline/data), and
    the developer's DVC cache, run-cache and local config."""
    where = Path(folder).resolve()
    top = _OUTPUTS if where == ROOT else _DVC_STATE if where == ROOT / ".dvc" else set()
    return set(_ANYWHERE(folder, names)) | top.intersection(names)


def run(cmd: list[str], cwd: Path, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run a command in a project copy; on failure the assertion shows its output."""
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run(cmd, cwd=cwd, env=full_env, capture_output=True, text=True)
    if check:
        assert proc.returncode == 0, f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc


def stages_run(out: str) -> list[str]:
    """The stages a `dvc repro` / `dvc exp run` ran, from its output. `inputs` runs every time (it fingerprints the
    files params name, in a few stats), so a run that does no work runs only `inputs`."""
    return re.findall(r"^Running stage '([^']+)':", out, flags=re.M)


def experiment_dice(shown: list) -> dict[str, float]:
    """{experiment name: evaluate Dice} from `dvc exp show --json`."""
    found = {}
    for entry in shown:
        for group in entry.get("experiments") or []:
            for rev in group.get("revs", []):
                metrics = (rev.get("data") or {}).get("metrics") or {}
                data = (metrics.get("reports/evaluate/metrics.json") or {}).get("data") or {}
                if "dice" in data:
                    found[rev.get("name") or rev["rev"]] = data["dice"]
    return found


def edit_yaml(path: Path, edit) -> None:
    """Change a YAML file in place with `edit(data)`, keeping its comments."""
    yaml = YAML()
    data = yaml.load(path)
    edit(data)
    yaml.dump(data, path)


def make_project(dest: Path, params_edit=None) -> Path:
    """A copy of this project in its own git repository, as a fresh clone would be."""
    shutil.copytree(ROOT, dest, ignore=_copy_ignore)
    if params_edit:
        edit_yaml(dest / "params.yaml", params_edit)
    for cmd in (
        ["git", "init", "-q"],
        ["git", "config", "user.email", "t@example.com"],
        ["git", "config", "user.name", "test"],
        ["git", "add", "-A"],
        ["git", "commit", "-qm", "clone"],
    ):
        run(cmd, dest)
    return dest


def tiny_pipeline(data: dict, epochs: int = 1, worst: int = 1) -> None:
    """Params for a whole pipeline in seconds: 4 train cars and 1 test car at 160x96, a tiny U-Net."""
    data["download"]["demo"].update(train=4, test=1, width=160, height=96)
    data["split"]["folds"] = 2
    data["train"]["model"].update(base_channels=4, depth=2)
    data["train"].update(epochs=epochs, scale=0.5, batch_size=8, workers=0, warmup_epochs=0)
    data["predict"].update(workers=0)
    data["evaluate"].update(worst=worst)


def shared(tmp_path_factory, name: str, build) -> Path:
    """A folder made once for the whole run, whichever worker asks first (the others wait for it): `build(folder)`
    fills it. Tests must only read it, or work on a copy."""
    from filelock import FileLock

    root = tmp_path_factory.getbasetemp()
    root = root.parent if os.environ.get("PYTEST_XDIST_WORKER") else root  # the workers' common folder
    folder = root / f"shared-{name}"
    with FileLock(str(folder) + ".lock"):
        if not (folder / ".done").is_file():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            build(folder)
            (folder / ".done").touch()
    return folder


@pytest.fixture(scope="session")
def tiny_project(tmp_path_factory) -> Path:
    """A project after a whole `dvc repro` with `tiny_pipeline` params, made once for every worker. Tests work on
    a `copy_project` of it."""

    def build(folder: Path) -> None:
        project = make_project(folder / "p", tiny_pipeline)
        run(["dvc", "repro"], project)

    return shared(tmp_path_factory, "tiny-project", build) / "p"


def copy_project(src: Path, dest: Path) -> Path:
    """An independent copy of a project, its git repository, DVC cache and outputs included (DVC's state
    database and locks are left behind: they belong to the original's files)."""
    shutil.copytree(
        src, dest, symlinks=True, ignore=lambda folder, names: {"tmp"} if folder.endswith(".dvc") else set()
    )
    return dest


def small_demo(data: dict) -> None:
    """Params for a demo small enough for fast tests (6 train cars, 2 test cars, 320x214)."""
    data["download"]["demo"].update(train=6, test=2, width=320, height=214)
    data["split"]["folds"] = 3


@pytest.fixture(scope="session")
def tiny_multiclass(tmp_path_factory) -> Path:
    """The multi-class variant of `tiny_demo` (masks: background, body, windows, wheels, lights)."""
    from pipeline.competitions.carvana import demo

    root = tmp_path_factory.mktemp("tiny-multiclass")
    demo.generate(root / "raw", root / "truth", seed=7, train=3, test=1, width=160, height=96, multiclass=True, jobs=1)
    return root / "raw"


def open_carvana(raw: Path):
    """A demo folder in Carvana's layout, opened as the pipeline's stages open it."""
    from pipeline.competitions import open_competition
    from pipeline.competitions.carvana import SLUG

    return open_competition(raw, SLUG)


def encode_carvana(predictions: Path, names: list[str], out: Path, threshold: float = 0.5, jobs: int = 1) -> dict:
    """The encode stage's file for Carvana-layout test images at one threshold."""
    from pipeline.competitions.carvana import Carvana
    from pipeline.masks.postprocess import Rule
    from pipeline.submission import encode

    return encode.write(predictions, Carvana, Carvana.format_for(names), [Rule(threshold)], out, jobs)


def planned_params(*sections: str, overrides=()) -> dict:
    """params.yaml's sections with every `auto` as the plan of the Carvana demo has it."""
    from bench.common import demo_params

    return demo_params(*sections, path=ROOT / "params.yaml", overrides=overrides)


def tiny_train_params(**changes):
    """The project's train params, shrunk for tests (a 4-channel U-Net of depth 2 on 80x48 images)."""

    from pipeline import params

    p = planned_params("train")["train"]
    model = params.replace(p.model, base_channels=4, depth=2)
    base = dict(model=model, scale=0.5, epochs=2, batch_size=8, workers=0, warmup_epochs=0.5)
    return params.replace(p, **{**base, **changes})


def tiny_folds(raw: Path):
    """The folds `tiny_model` was trained on: 3, by car, unstratified."""
    from pipeline.data import split

    return split.split_competition(open_carvana(raw), folds=3, seed=0, stratify=False, group="car")


def train_tiny(raw: Path, out: Path, **changes):
    """Train fold 0 of `tiny_folds` with `tiny_train_params(**changes)` into `out`; returns the FoldResult."""
    from pipeline import training

    p = tiny_train_params(**changes)
    return training.train_fold(p, training.setup(p), open_carvana(raw), tiny_folds(raw), 0, out, progress=False)


@pytest.fixture(scope="session")
def tiny_model(tiny_demo, tmp_path_factory) -> Path:
    """best.pt of a tiny U-Net trained for one epoch on `tiny_demo` (fold 0 of 3)."""
    out = tmp_path_factory.mktemp("tiny-model")
    train_tiny(tiny_demo, out, epochs=1)
    return out / "best.pt"


def carvana(*args, cwd=None, check=True) -> subprocess.CompletedProcess:
    """Run the `carvana` command line in this process (its entry point, `main`, with the exit status it would
    give); with `check`, its output shows when it fails. test_cli runs the installed console script once."""
    from pipeline.cli import main

    argv = [str(a) for a in args]
    out, err, status, here = io.StringIO(), io.StringIO(), 0, os.getcwd()
    try:
        os.chdir(cwd or here)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main(argv)
    except SystemExit as exit_:
        status = exit_.code if isinstance(exit_.code, int) else 1
    finally:
        os.chdir(here)
    proc = subprocess.CompletedProcess(["carvana", *argv], status, out.getvalue(), err.getvalue())
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def write_test_images(raw: Path, folder: Path, count: int = 2) -> list[Path]:
    """The first `count` test images of a competition, written as files into `folder`."""
    from pipeline.competitions.archive import ImageArchive

    test = ImageArchive(raw / "test.zip")
    paths = []
    for name in test.names()[:count]:
        (folder / name).write_bytes(test.read(name))
        paths.append(folder / name)
    return paths


@pytest.fixture(scope="session")
def tiny_submission(tiny_demo, tiny_model, tmp_path_factory) -> Path:
    """submission.csv.gz of `tiny_model` on the test images of `tiny_demo`."""
    from pipeline.prediction import predict
    from pipeline.prediction.predictor import load_predictor

    out = tmp_path_factory.mktemp("tiny-submission")
    comp = open_carvana(tiny_demo)
    rt = float32()
    predictor = load_predictor([tiny_model], rt.device, rt.memory_format)
    predict.predict_test_set(
        predictor,
        comp.test,
        comp.test_names,
        out / "pred",
        competition=comp.slug,
        rt=rt,
        tta="none",
        shard_size=8,
        batch_size=8,
        workers=0,
    )
    names = comp.test_names
    encode_carvana(out / "pred", names, out / "submission.csv.gz", 0.5, jobs=1)
    return out / "submission.csv.gz"


def float32():
    """The Runtime of inference in float32 on this CPU (predict.amp false): numbers the same on any CPU."""
    from pipeline import runtime

    return runtime.for_inference(amp=False)


def write_shards(
    out: Path, fingerprint="a", images=5, shard_size=2, seed=0, size=(6, 8), original=(12, 16), names=None
):
    """Shards of random uint8 probabilities for `images` images (named car_NN.jpg unless `names`); (manifest,
    what was written)."""
    import numpy as np

    from pipeline.prediction import shards

    manifest = shards.prepare(out, fingerprint, images, shard_size, 1, ["background", "car"], size)
    rng = np.random.default_rng(seed)
    written = []
    for k in range(manifest["shards"]):
        writer = shards.ShardWriter(out, k)
        for i in range(k * shard_size, min((k + 1) * shard_size, images)):
            probs = rng.integers(0, 256, (1, *size), dtype=np.uint8)
            name = names[i] if names else f"car_{i:02d}.jpg"
            writer.add(name, probs, list(original))
            written.append((name, tuple(original), probs))
        writer.close()
    return manifest, written


def replace_member(archive: Path, suffix: str, data: bytes) -> None:
    """Give the member whose name ends with `suffix` other bytes, everything else kept."""
    with zipfile.ZipFile(archive) as z:
        members = [(info, data if info.filename.endswith(suffix) else z.read(info)) for info in z.infolist()]
    with zipfile.ZipFile(archive, "w") as z:
        for info, blob in members:
            z.writestr(info, blob)


def upside_down(image: Image.Image | bytes) -> bytes:
    """The image as a JPEG whose EXIF orientation (3) shows it upside down: stored one way, shown the other, at
    the same size."""
    from pipeline.images import ORIENTATION

    if isinstance(image, bytes):
        image = Image.open(io.BytesIO(image))
    exif = Image.Exif()
    exif[ORIENTATION] = 3
    buf = io.BytesIO()
    image.save(buf, "JPEG", exif=exif)
    return buf.getvalue()


def repaint(archive_path: Path, names) -> None:
    """Rewrite the named members with other pixels, same names and sizes."""
    with zipfile.ZipFile(archive_path) as z:
        members = {i.filename: z.read(i.filename) for i in z.infolist()}
    with zipfile.ZipFile(archive_path, "w") as z:
        for member, blob in members.items():
            if member.rsplit("/", 1)[-1] in names:
                img = Image.open(io.BytesIO(blob))
                out = io.BytesIO()
                Image.eval(img.convert("RGB"), lambda v: 255 - v).save(out, "JPEG", quality=90)
                blob = out.getvalue()
            z.writestr(member, blob)
