"""The distribution: a wheel that holds every module of pipeline/, and whose every module imports after a plain
`pip install` with the inference core's dependencies alone (no dvc, dvclive or kaggle)."""

from __future__ import annotations

import subprocess
import zipfile

from pipeline.kernels import environment, wheels
from tests.conftest import ROOT

HERE = wheels.Target("3.11", "manylinux_2_35_x86_64")


def _tracked_modules() -> set[str]:
    out = subprocess.run(["git", "ls-files", "pipeline"], cwd=ROOT, capture_output=True, text=True, check=True)
    return {line for line in out.stdout.splitlines() if line.endswith(".py")}


def test_the_wheel_holds_every_tracked_module_and_installs_without_the_pipeline_extra(tmp_path):
    wheel = wheels.build_own(ROOT, tmp_path / "dist")
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = _tracked_modules() or {str(p.relative_to(ROOT)) for p in (ROOT / "pipeline").rglob("*.py")}
    assert modules and modules <= names, sorted(modules - names)
    assert not any(n.startswith(("stages/", "tests/", "bench/")) for n in names)
    assert wheels.build_own(ROOT, tmp_path / "again").read_bytes() == wheel.read_bytes()  # reproducible

    core = [str(r) for r in wheels.metadata_requires(wheel) if r.marker is None]
    assert not {"dvc", "dvclive", "kaggle"} & {r.split(">")[0].split("=")[0].split("<")[0] for r in core}
    python = environment.create(tmp_path / "venv", core, [HERE])
    proc = environment.pip_install(python, wheel.parent, f"kaggle-segmentation=={wheel.name.split('-')[1]}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    dotted = sorted(m[:-3].replace("/", ".").removesuffix(".__init__") for m in modules)
    script = (
        "import importlib, pipeline\n"
        f"for m in {dotted!r}: importlib.import_module(m)\n"
        "print(pipeline.__file__)\n"
        "import importlib.util as u\n"
        "print([n for n in ('dvc', 'dvclive', 'kaggle') if u.find_spec(n)])\n"
    )
    run = subprocess.run([str(python), "-c", script], cwd=tmp_path, capture_output=True, text=True, env={})
    assert run.returncode == 0, run.stderr
    where, absent = run.stdout.splitlines()
    assert where.startswith(str(tmp_path / "venv")), where  # the installed copy, not the checkout
    assert absent == "[]"  # the pipeline's own dependencies are not there, and nothing needed them
