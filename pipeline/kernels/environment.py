"""A clean Python environment that holds only some of this one's packages: what Kaggle's image gives (torch,
numpy, ...), before a bundle is installed into it offline, to prove that the bundle is complete.

The chosen distributions (and every one they require) are not copied: the new environment's site-packages gets a
.pth line naming a folder of symbolic links to their installed files, so that it sees exactly them, in a second.
"""

from __future__ import annotations

import subprocess
import venv
from pathlib import Path

from pipeline.kernels import wheels


def create(folder: Path, packages: list[str], targets: list[wheels.Target]) -> Path:
    """A virtual environment in `folder` that sees `packages` and what they require (on any of `targets`) from
    this environment, and pip (Kaggle's image has it), and nothing else of it; its python."""
    venv.create(folder, with_pip=False, symlinks=True, clear=True)
    python = folder / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
    )  # fmt: skip
    shelf = folder / "preinstalled"
    shelf.mkdir()
    for name in wheels.closure([wheels.Requirement(p) for p in [*packages, "pip"]], targets):
        dist = wheels.installed(name)
        if dist is None:
            continue  # required on another target only
        for entry in wheels.top_level(dist):
            link, real = shelf / entry, Path(dist.locate_file(entry))
            if not link.exists() and real.exists():
                link.symlink_to(real)
    (site / "preinstalled.pth").write_text(f"{shelf}\n")
    return python


def pip_install(python: Path, find_links: Path, requirement: str) -> subprocess.CompletedProcess:
    """Install `requirement` into the environment of `python` from the wheels in `find_links` alone, as the kernel
    does (`pip install --no-index --find-links`)."""
    cmd = [str(python), "-m", "pip", "install", "-q", "--no-index", "--disable-pip-version-check", "--find-links"]
    return subprocess.run([*cmd, str(find_links), requirement], capture_output=True, text=True)
