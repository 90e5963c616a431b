"""The front door: README.md at most 250 lines, holding the test command that CI runs, and every relative link of
README.md and docs/ resolving to a file (and to a heading, when the link names one)."""

from __future__ import annotations

import re

from tests.conftest import ROOT

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _anchors(markdown: str) -> set[str]:
    """GitHub's anchors of a page's headings."""
    found = set()
    for line in markdown.splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            found.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return found


def _relative_links(page):
    for target in LINK.findall(page.read_text()):
        if not re.match(r"^[a-z]+:", target):  # http(s):, mailto: ...
            yield target


def test_the_readme_is_a_front_door_with_ci_s_test_command():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    ci = (ROOT / ".ci/run").read_text()
    command = re.search(r"TEST_COMMAND='([^']+)'", ci).group(1)
    assert command in readme.splitlines()


def test_every_relative_link_resolves():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    assert len(pages) > 1
    broken = []
    for page in pages:
        for target in _relative_links(page):
            path, _, anchor = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            if not file.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such file)")
            elif anchor and file.suffix == ".md" and anchor not in _anchors(file.read_text()):
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such heading)")
    assert not broken, "\n".join(broken)
