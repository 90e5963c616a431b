"""The test helpers themselves: a project copy is a fresh clone, never the developer's DVC state."""

from __future__ import annotations

from tests.conftest import ROOT, _copy_ignore


def test_a_project_copy_leaves_out_dvc_state_and_outputs_but_not_library_folders():
    assert _copy_ignore(str(ROOT / ".dvc"), ["config", "cache", "tmp", "config.local"]) == {
        "cache",
        "tmp",
        "config.local",
    }
    assert {"data", "models", ".venv", "__pycache__"} <= _copy_ignore(
        str(ROOT), ["data", "models", "pipeline", ".venv", "__pycache__"]
    )
    assert _copy_ignore(str(ROOT / "pipeline"), ["data", "models", "cache"]) == set()  # pipeline/data is code
