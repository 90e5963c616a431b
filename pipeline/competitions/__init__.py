"""Competitions as plug-ins, chosen by the Kaggle slug in `download.competition`: one module each (its files and
checks, how labels are read, the submission and its run-length dialect, the metric, the folds, a demo renderer),
read by every stage through `open_competition`. A slug not listed here names data in Carvana's file layout (a
subset of Carvana, a local import, the ISBI slices), without the checks that hold only for the real Carvana data.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.competitions.base import Competition, CompetitionError
from pipeline.competitions.carvana import Carvana
from pipeline.competitions.severstal import Severstal

KNOWN: dict[str, type[Competition]] = {c.slug: c for c in (Carvana, Severstal)}

__all__ = ["KNOWN", "Competition", "CompetitionError", "competition_class", "open_competition"]


def competition_class(slug: str) -> type[Competition]:
    """The class of a slug; Carvana's file layout for a slug this package does not know."""
    return KNOWN.get(slug, Carvana)


def open_competition(root: Path, slug: str, hq: bool = False) -> Competition:
    """The competition folder `root` (data/raw), read as the competition `slug` names."""
    cls = competition_class(slug)
    return cls(Path(root), hq, strict=slug == cls.slug)
