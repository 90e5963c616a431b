"""Competitions as plug-ins, chosen by the Kaggle slug in `download.competition`: one module each (its files and
checks, how labels are read, the submission and its run-length dialect, the metric, the folds, how Kaggle takes
submissions), read by every stage through `open_competition`. Data of your own (`download.source: local` under
any other name) is the generic `Folder` competition; with the demo or Kaggle source an unknown slug is an error.
"""

from __future__ import annotations

import difflib
from pathlib import Path

from pipeline.competitions.base import Competition, CompetitionError
from pipeline.competitions.carvana import Carvana
from pipeline.competitions.folder import Folder
from pipeline.competitions.severstal import Severstal

KNOWN: dict[str, type[Competition]] = {c.slug: c for c in (Carvana, Severstal)}

__all__ = ["KNOWN", "Competition", "CompetitionError", "Folder", "competition_class", "open_competition"]


def competition_class(slug: str, source: str = "local") -> type[Competition]:
    """The competition a slug names: a known one's class, the generic `Folder` for local data under another name;
    with the demo or Kaggle source an unknown slug stops, naming the known ones and the closest."""
    if slug in KNOWN:
        return KNOWN[slug]
    if source == "local":
        return Folder
    close = [s for s in KNOWN if slug and slug.lower() in s] or difflib.get_close_matches(slug, KNOWN, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]}?" if close else "."
    raise CompetitionError(
        f"download.competition {slug!r} is not a competition this package knows (with download.source {source}: "
        f"{', '.join(KNOWN)}){hint} Data of your own runs under any name with download.source local"
    )


def open_competition(root: Path, slug: str, hq: bool = False) -> Competition:
    """The competition folder `root` (data/raw), read as the competition `slug` names (`Folder` when it names none
    this package knows: only local data reaches a stage under such a name). The checks that hold only for the real
    data (`strict`) are the download's, when it imports a local copy."""
    return competition_class(slug)(Path(root), hq)
