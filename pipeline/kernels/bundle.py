"""The kernel bundle of a code competition, written by the package stage: two folders that `kaggle datasets create`
and `kaggle kernels push` (or the submit stage) take as they are.

- the dataset, as Kaggle will mount it under /kaggle/input/<dataset>/: `models/` (the checkpoints predict used: the
  fold models, or every blend member's), `wheels/` (this project's wheel and those of the dependencies that Kaggle's
  image lacks, for Kaggle's Python and this machine's), `bundle.json` (the recipe: every value predict and encode
  used) and `dataset-metadata.json`;
- the kernel: `kernel.py`, a short script that installs the wheels with pip, offline, and calls
  `pipeline.kernels.run.run` (the predict and encode stages' own functions), and `kernel-metadata.json` (a private
  script kernel, internet off, the dataset and the competition mounted).

Before it is accepted the bundle is tried as Kaggle will run it: the script in a clean environment that holds only
Kaggle's preinstalled packages (linked from this one), without the network where the machine allows a network
namespace, on test images laid out as Kaggle mounts the competition. Its size and its run time on the hidden test
set are checked against Kaggle's limits, with the figures.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path

from pipeline.competitions.base import Competition, SubmissionFormat
from pipeline.errors import UserError
from pipeline.kernels import environment, wheels
from pipeline.kernels.files import DATASET, KERNEL, OWNER, RECIPE, SCRIPT, fix_for, link, size

PROJECT = "kaggle-segmentation"


class PackageError(UserError):
    """A bundle that would fail on Kaggle; the message says why, with the figures, and the fix."""


@dataclass(frozen=True)
class Member:
    """Models that predict together (one experiment's folds), as predict ran them."""

    name: str
    weight: float
    tta: str
    amp: bool
    models: list[Path]


def slugs(competition: str, dataset: str, kernel: str) -> tuple[str, str]:
    """The dataset's and the kernel's slugs: the params', or kseg-<competition> (at most 50 characters)."""
    base = f"kseg-{competition}"[:43].rstrip("-")
    return dataset or base, kernel or f"{base}-kernel"


def script(dataset: str, competition: str, requirement: str, version: str) -> str:
    """The kernel's code: install the bundle offline, then run the predict and encode stages' functions."""
    return f'''"""Kaggle kernel for {competition}, written by {PROJECT} {version}'s package stage.

Installs the bundle's wheels offline, then predicts every test image that the competition's sample_submission.csv
lists and writes /kaggle/working/submission.csv with the same code as the pipeline's predict and encode stages.
"""

import os
import subprocess
import sys
from pathlib import Path

KAGGLE = Path(os.environ.get("KAGGLE_ROOT", "/kaggle"))  # Kaggle's folders (a copy elsewhere runs the same script)
BUNDLE = KAGGLE / "input" / "{dataset}"
COMPETITION = KAGGLE / "input" / "{competition}"

pip = [sys.executable, "-m", "pip", "install", "--no-index", "--disable-pip-version-check", "--quiet"]
subprocess.run([*pip, "--find-links", str(BUNDLE / "wheels"), "{requirement}"], check=True)

from pipeline.kernels.run import run  # noqa: E402 (installed just above)

run(BUNDLE, COMPETITION, KAGGLE / "working" / "submission.csv")
'''


def write(
    out: Path,
    comp: type[Competition],
    members: list[Member],
    recipe: dict,
    predict: dict,
    package,
    root: Path,
    wheel_cache: Path,
) -> dict:
    """Write the bundle's two folders into `out` (what was there goes); returns what `bundle.json` records."""
    shutil.rmtree(out, ignore_errors=True)
    dataset, kernel = out / DATASET, out / KERNEL
    dataset_slug, kernel_slug = slugs(comp.slug, package.dataset, package.kernel)
    owner = package.owner or OWNER
    spec_members = []
    for k, member in enumerate(members):
        folder = Path("models") / (f"member{k}" if len(members) > 1 else "")
        copied = []
        for path in member.models:
            target = dataset / folder / path.parent.name / path.name  # models/[member<k>/]fold<n>/best.pt
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
            copied.append(str(target.relative_to(dataset)))
        spec_members.append({"name": member.name, "weight": member.weight, "tta": member.tta, "amp": member.amp,
                             "models": copied})  # fmt: skip
    targets = [wheels.Target(v, package.platform) for v in package.python]
    own = wheels.build_own(root, dataset / "wheels")
    bundled = wheels.gather(own, targets, package.preinstalled, package.bundle, wheel_cache, dataset / "wheels")
    version = own.name.split("-")[1]
    spec = {
        "competition": comp.slug,
        "requirement": f"{PROJECT}=={version}",
        "members": spec_members,
        "recipe": recipe,
        **predict,
        "python": list(package.python),
        "platform": package.platform,
        "preinstalled": list(package.preinstalled),
        "wheels": sorted(w.name for w in bundled),
    }
    (dataset / RECIPE).write_text(json.dumps(spec, indent=2) + "\n")
    metadata = {
        "title": dataset_slug,
        "id": f"{owner}/{dataset_slug}",
        "licenses": [{"name": "other"}],
        "subtitle": f"The kernel bundle of {comp.slug}, by {PROJECT}"[:80],
    }
    (dataset / "dataset-metadata.json").write_text(json.dumps(metadata, indent=2) + "\n")
    kernel.mkdir(parents=True)
    (kernel / SCRIPT).write_text(script(dataset_slug, comp.slug, spec["requirement"], version))
    kernel_metadata = {
        "id": f"{owner}/{kernel_slug}",
        "title": kernel_slug,
        "code_file": SCRIPT,
        "language": "python",
        "kernel_type": "script",
        "is_private": True,
        "enable_gpu": package.gpu,
        "enable_tpu": False,
        "enable_internet": False,  # the 2.2.5 client takes a missing key for true, which code competitions refuse
        "dataset_sources": [f"{owner}/{dataset_slug}"],
        "competition_sources": [comp.slug],
        "kernel_sources": [],
        "model_sources": [],
    }
    (kernel / "kernel-metadata.json").write_text(json.dumps(kernel_metadata, indent=2) + "\n")
    return spec


def check_size(out: Path, max_gb: float) -> int:
    """The dataset's bytes, refused above Kaggle's limit."""
    total = size(out)
    if total > max_gb * 1e9:
        models = sum(p.stat().st_size for p in (out / DATASET / "models").rglob("*") if p.is_file())
        raise PackageError(
            f"the bundle's dataset is {total / 1e9:.1f} GB ({models / 1e9:.1f} GB of models), over Kaggle's "
            f"{max_gb:g} GB (package.max_gb): predict with fewer folds or blend members, or a smaller encoder"
        )
    return total


@cache
def network_namespace() -> list[str]:
    """The prefix that runs a command without the network (`unshare -n`, as root), or [] where the machine allows
    no network namespace."""
    if shutil.which("unshare") is None:
        return []
    ok = subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0
    return ["unshare", "-n"] if ok else []


def layout(kaggle: Path, out: Path, comp: type[Competition], fmt: SubmissionFormat, images: dict[str, bytes], place):
    """Kaggle's folders for the kernel under `kaggle` (/kaggle's input/ and working/): the bundle's dataset by its
    slug, and the competition with these test images (in `place`: a folder, or a zip like Kaggle's) and the sample
    submission of `fmt`."""
    spec = json.loads((out / DATASET / RECIPE).read_text())
    metadata = json.loads((out / KERNEL / "kernel-metadata.json").read_text())
    dataset_slug = metadata["dataset_sources"][0].split("/", 1)[1]
    shutil.copytree(out / DATASET, kaggle / "input" / dataset_slug, copy_function=link)
    competition = kaggle / "input" / spec["competition"]
    comp.write_kernel_inputs(competition, fmt, images, place)
    (kaggle / "working").mkdir(parents=True)
    return competition


def try_offline(
    out: Path, comp: type[Competition], fmt: SubmissionFormat, images: dict[str, bytes], work: Path, place=None
) -> tuple[Path, float, bool]:
    """Run the kernel as Kaggle will: its script in a clean environment of this Python holding only Kaggle's
    preinstalled packages (none of this project's), without the network where a namespace allows, on these test
    images laid out (in `work`) as Kaggle mounts the competition. Returns (the submission it wrote, seconds, whether
    it ran without a network); PackageError with the log's last lines when it fails."""
    spec = json.loads((out / DATASET / RECIPE).read_text())
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    if here not in spec["python"]:
        raise PackageError(
            f"the bundle is tried here before it goes, in this Python ({here}), but package.python lists "
            f"{spec['python']}: add {here} to it"
        )
    targets = [wheels.Target(v, spec["platform"]) for v in spec["python"]]
    python = environment.create(work / "env", spec["preinstalled"], targets)
    kaggle = work / "kaggle"
    layout(kaggle, out, comp, fmt, images, place)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(work), "KAGGLE_ROOT": str(kaggle), "PYTHONNOUSERSITE": "1"}
    code = shutil.copy(out / KERNEL / SCRIPT, work / SCRIPT)  # the script alone, as Kaggle has it: no checkout
    cmd = [*network_namespace(), str(python), str(code)]
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=kaggle / "working", env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-12:])
        raise PackageError(f"the kernel failed when tried offline in a clean environment:\n{tail}\n{fix_for(tail)}")
    return kaggle / "working" / "submission.csv", seconds, bool(network_namespace())


def check_time(cost, limits, gpu: bool) -> str:
    """The estimate of the kernel's run time on Kaggle, refused over the competition's limit."""
    from pipeline.budget import duration

    limit = (limits.gpu_hours if gpu else limits.cpu_hours) * 3600
    shown = f"GPU ~{duration(cost.gpu_s)}, CPU ~{duration(cost.cpu_s)} ({cost.how})"
    if cost.on(gpu) > limit:
        device = "GPU" if gpu else "CPU"
        raise PackageError(
            f"the kernel would take ~{duration(cost.on(gpu))} on Kaggle's {device} for the hidden test set, over the "
            f"competition's {duration(limit)}: {shown}. Predict with fewer folds, a smaller TTA set or scale"
            + ("" if gpu else ", or on the GPU (package.gpu true)")
        )
    return shown


def subset(fmt: SubmissionFormat, count: int) -> SubmissionFormat:
    """The first `count` images of a sample submission."""
    return replace(fmt, images=fmt.images[:count], rows=fmt.rows[:count])
