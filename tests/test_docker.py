"""The Dockerfile (no Docker engine runs here): it parses, and it runs the README's commands as non-root."""

from __future__ import annotations

import json
import re

from tests.conftest import ROOT

INSTRUCTIONS = {"FROM", "RUN", "CMD", "ENV", "WORKDIR", "COPY", "USER", "ARG", "LABEL", "EXPOSE", "ENTRYPOINT"}


def _instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text()
    logical = re.sub(r"\\\n\s*", " ", text)
    out = []
    for line in logical.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word, rest.strip()))
    return out


def test_every_line_is_an_instruction_and_the_base_is_cuda():
    steps = _instructions()
    assert all(word in INSTRUCTIONS for word, _ in steps), steps
    assert steps[0][0] == "FROM" and steps[0][1].startswith("nvidia/cuda:")


def test_it_installs_and_runs_what_the_readme_says_as_a_non_root_user():
    steps = _instructions()
    readme = (ROOT / "README.md").read_text()
    demo_command = next(line for line in readme.splitlines() if line.endswith("&& dvc repro"))
    install = re.search(r"pip install torch==\S+ torchvision==\S+ -e \S+", demo_command).group(0)
    assert any(word == "RUN" and install in rest for word, rest in steps)
    users = [rest for word, rest in steps if word == "USER"]
    assert users and users[-1] not in ("root", "0")
    cmd = [rest for word, rest in steps if word == "CMD"][-1]
    assert json.loads(cmd) == ["dvc", "repro"]
    assert [w for w, _ in steps].index("USER") < [w for w, _ in steps].index("CMD")
    ignored = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines() if not line.startswith("#")]
    assert "data" in ignored and ".git" not in ignored
