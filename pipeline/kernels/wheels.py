"""Wheels for an offline install: this project's own, built from its sources, and those of its runtime
dependencies, re-packed from this environment's installed files where their tags fit the target Python and
platform, else fetched with `pip download` for that target (which needs the package index).

Re-packing is what makes a bundle that installs offline: the installed files are the ones every test here ran, and
a wheel's tags (its WHEEL file) say where it installs. Files outside site-packages (console scripts), compiled
bytecode and the installer's own records are left out; pip writes them again at install time.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import importlib.metadata as md
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.tags import Tag, compatible_tags, cpython_tags, parse_tag
from packaging.utils import canonicalize_name, parse_wheel_filename

from pipeline.errors import UserError

DATE = (1980, 1, 1, 0, 0, 0)  # every member's time: the same files make the same bytes
SOURCE_DATE_EPOCH = "315532800"  # 1980-01-01, for setuptools' own wheel
LEFT_OUT = {"INSTALLER", "REQUESTED", "RECORD", "direct_url.json"}  # written by the installer, not the wheel


class WheelError(UserError):
    """A wheel that cannot be built or found for the target; the message names the package and the fix."""


@dataclass(frozen=True)
class Target:
    """Where a bundle installs: a CPython version ("3.12") and a manylinux platform ("manylinux_2_35_x86_64")."""

    python: str
    platform: str

    def platforms(self) -> list[str]:
        """The platform tags a pip on this machine accepts, newest first (glibc 2.35 takes manylinux_2_17 too)."""
        match = re.fullmatch(r"manylinux_(\d+)_(\d+)_(\w+)", self.platform)
        if not match:
            return [self.platform]
        major, minor, arch = int(match[1]), int(match[2]), match[3]
        tags = [f"manylinux_{major}_{m}_{arch}" for m in range(minor, 4, -1)]
        legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
        return tags + [f"{name}_{arch}" for m, name in legacy.items() if m <= minor]

    def tags(self) -> set[Tag]:
        version = tuple(int(v) for v in self.python.split("."))
        platforms = self.platforms()
        return set(cpython_tags(version, platforms=platforms)) | set(compatible_tags(version, platforms=platforms))

    def environment(self) -> dict[str, str]:
        """Marker values of the target (`python_version < "3.13"`), the rest as on this machine."""
        env = dict(default_environment())
        env.update(python_version=self.python, python_full_version=f"{self.python}.0")
        return env


def build_own(root: Path, out: Path) -> Path:
    """This project's wheel, from a clean copy of its package sources and pyproject.toml (a `build/` folder left in
    the checkout by an earlier build would add modules that no longer exist). The readme in the copy is a line, so
    that editing the documentation does not change the bundle."""
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="kseg-wheel-") as tmp:
        src = Path(tmp) / "src"
        shutil.copytree(root / "pipeline", src / "pipeline", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        shutil.copyfile(root / "pyproject.toml", src / "pyproject.toml")
        (src / "README.md").write_text("kaggle-segmentation: see the project's README.md.\n")
        built = Path(tmp) / "wheel"
        env = {**os.environ, "SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH, "PIP_NO_INDEX": "1"}
        cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(built)]
        proc = subprocess.run([*cmd, str(src)], capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-3:])
            raise WheelError(
                f"could not build this project's wheel ({tail}); install the pipeline's dependencies, which bring "
                f"setuptools: pip install -e '.[pipeline]'"
            )
        (wheel,) = built.glob("*.whl")
        target = out / wheel.name
        shutil.copyfile(wheel, target)
    return target


def metadata_requires(wheel: Path) -> list[Requirement]:
    """The Requires-Dist lines of a wheel's METADATA (its runtime dependencies, extras' marked)."""
    with zipfile.ZipFile(wheel) as z:
        name = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        text = z.read(name).decode()
    lines = [line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("Requires-Dist:")]
    return [Requirement(line) for line in lines]


def installed(name: str) -> md.Distribution | None:
    try:
        return md.distribution(name)
    except md.PackageNotFoundError:
        return None


def _applies(req: Requirement, env: dict, extras: set[str]) -> bool:
    if req.marker is None:
        return True
    return any(req.marker.evaluate({**env, "extra": e}) for e in (extras or {""}))


def closure(requirements: list[Requirement], targets: list[Target]) -> dict[str, Requirement]:
    """Every distribution that `requirements` need on any of `targets`, followed through this environment's
    metadata: {canonical name: the first requirement that asked for it}. A package not installed here is kept with
    its requirement (to be fetched), its own requirements unknown."""
    found: dict[str, Requirement] = {}
    todo = [(r, set()) for r in requirements]
    while todo:
        req, extras = todo.pop()
        if not any(_applies(req, t.environment(), extras) for t in targets):
            continue
        name = canonicalize_name(req.name)
        if name in found and req.extras <= found[name].extras:
            continue
        found[name] = req if name not in found else found[name]
        dist = installed(name)
        for line in (dist.requires or []) if dist is not None else []:
            todo.append((Requirement(line), set(req.extras)))
    return found


def top_level(dist: md.Distribution) -> set[str]:
    """The entries of site-packages that a distribution owns (its packages, modules and dist-info folder)."""
    return {Path(str(f)).parts[0] for f in dist.files or () if not str(f).startswith("..")}


def repackable(dist: md.Distribution, target: Target) -> bool:
    """Whether the installed files make a wheel that installs on `target` (its WHEEL tags fit)."""
    text = dist.read_text("WHEEL") or ""
    tags = {t for line in text.splitlines() if line.startswith("Tag:") for t in parse_tag(line[4:].strip())}
    return bool(tags & target.tags())


def _wheel_tag(dist: md.Distribution) -> str:
    """The compressed tag of a wheel file name, from the WHEEL file's Tag lines (py2-none-any + py3-none-any:
    py2.py3-none-any)."""
    lines = [line[4:].strip() for line in (dist.read_text("WHEEL") or "").splitlines() if line.startswith("Tag:")]
    parts = [line.split("-") for line in lines]
    return "-".join(".".join(dict.fromkeys(p[i] for p in parts)) for i in range(3))


def _record_line(name: str, data: bytes) -> list[str]:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return [name, f"sha256={digest}", str(len(data))]


def repack(dist: md.Distribution, out: Path) -> Path:
    """A wheel of an installed distribution, from its installed files (byte for byte the same files every run)."""
    name = re.sub(r"[-_.]+", "_", dist.metadata["Name"])
    info = f"{name}-{dist.version}.dist-info"
    installed_info = next(p for p in top_level(dist) if p.endswith(".dist-info"))
    members = []
    for f in sorted(dist.files or (), key=str):
        path = str(f)
        if path.startswith("..") or "__pycache__" in path or path.endswith(".pyc"):
            continue
        parts = Path(path).parts
        if parts[0] == installed_info:
            if parts[-1] in LEFT_OUT:
                continue
            path = "/".join((info, *parts[1:]))
        members.append((path, Path(f.locate()).read_bytes()))
    out.mkdir(parents=True, exist_ok=True)
    target = out / f"{name}-{dist.version}-{_wheel_tag(dist)}.whl"
    record = io.StringIO()
    writer = csv.writer(record, lineterminator="\n")
    part = target.with_name(target.name + ".part")
    with zipfile.ZipFile(part, "w", zipfile.ZIP_DEFLATED) as z:
        for path, data in members:
            _write(z, path, data)
            writer.writerow(_record_line(path, data))
        writer.writerow([f"{info}/RECORD", "", ""])
        _write(z, f"{info}/RECORD", record.getvalue().encode())
    part.replace(target)
    return target


def _write(z: zipfile.ZipFile, name: str, data: bytes) -> None:
    member = zipfile.ZipInfo(name, DATE)
    member.compress_type = zipfile.ZIP_DEFLATED
    member.external_attr = 0o644 << 16
    z.writestr(member, data)


def download(req: str, target: Target, out: Path) -> Path:
    """A wheel of one requirement for `target`: from the wheel cache `out`, else `pip download` (no dependencies:
    the closure lists them), which needs the package index."""
    found = _cached(out, req, target)
    if found:
        return found[0]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", "-d", str(out)]
    cmd += ["--python-version", target.python, "--implementation", "cp"]
    for platform in target.platforms():
        cmd += ["--platform", platform]
    proc = subprocess.run([*cmd, req], capture_output=True, text=True)
    found = _cached(out, req, target)
    if proc.returncode != 0 or not found:
        why = (proc.stderr.strip().splitlines() or ["no wheel"])[-1]
        raise WheelError(
            f"no wheel of {req} for Python {target.python} on {target.platform} ({why}); run the package stage "
            f"where pip reaches the package index, put the wheel in {out}, or set package.python to a version "
            f"that has one"
        )
    return found[0]


def _cached(out: Path, req: str, target: Target) -> list[Path]:
    """Wheels of `req` in `out` that install on `target`."""
    wanted = Requirement(req)
    found = []
    for wheel in sorted(out.glob("*.whl")) if out.is_dir() else []:
        name, version, _, tags = parse_wheel_filename(wheel.name)
        if name == canonicalize_name(wanted.name) and wanted.specifier.contains(version, prereleases=True):
            if set(tags) & target.tags():
                found.append(wheel)
    return found


def gather(own: Path, targets: list[Target], preinstalled: list[str], forced: list[str], cache: Path, out: Path):
    """The wheels a kernel installs offline beside `own` (this project's wheel) into `out`: every runtime
    dependency of `own` on each target, except what Kaggle's image has (`preinstalled` and what those require),
    unless `forced`. Each comes from this environment's installed files where its tags fit the target, else from
    the wheel cache `cache` or `pip download`. Returns the wheels, `own` first."""
    core = [r for r in metadata_requires(own) if r.marker is None or "extra" not in str(r.marker)]
    needed = closure(core, targets)
    forced = {canonicalize_name(f) for f in forced}
    kaggle = closure([Requirement(p) for p in preinstalled if canonicalize_name(p) not in forced], targets)
    out.mkdir(parents=True, exist_ok=True)
    found = [out / own.name]
    if own.parent != out:
        shutil.copyfile(own, found[0])
    for name in sorted(set(needed) - set(kaggle)):
        dist = installed(name)
        wanted = f"{name}=={dist.version}" if dist is not None else str(needed[name])
        for target in targets:
            if dist is not None and repackable(dist, target):
                built = next(iter(_cached(cache, wanted, target)), None) or repack(dist, cache)
            else:
                built = download(wanted, target, cache)
            if not (out / built.name).exists():
                shutil.copyfile(built, out / built.name)
                found.append(out / built.name)
    return found


def bundled_versions(preinstalled: list[str], forced: list[str], targets: list[Target]) -> dict[str, str]:
    """{distribution: version} of this environment that a bundle would take: what this project's installed metadata
    requires, less Kaggle's preinstalled set; a dependency of the package stage that DVC cannot see otherwise (an
    upgraded package changes the bundle)."""
    own = installed("kaggle-segmentation")
    core = [Requirement(r) for r in (own.requires or []) if "extra" not in r] if own is not None else []
    needed = closure(core, targets)
    forced = {canonicalize_name(f) for f in forced}
    kaggle = closure([Requirement(p) for p in preinstalled if canonicalize_name(p) not in forced], targets)
    return {n: (installed(n).version if installed(n) else "not installed") for n in sorted(set(needed) - set(kaggle))}
