"""The registry of competitions: a known slug is its module, local data under another name is the generic Folder
competition, and with the demo or Kaggle source an unknown slug stops, naming the known ones."""

from __future__ import annotations

import pytest

from pipeline.competitions import KNOWN, CompetitionError, Folder, competition_class, open_competition
from pipeline.competitions.carvana import Carvana
from pipeline.competitions.severstal import Severstal


def test_known_slugs_are_their_modules_and_local_data_is_the_generic_folder():
    assert competition_class("carvana-image-masking-challenge", "kaggle") is Carvana
    assert competition_class("severstal-steel-defect-detection", "demo") is Severstal
    assert competition_class("isbi2012-membrane", "local") is Folder and Folder not in KNOWN.values()
    assert "folder of your own" in Folder.title and "generic" in Folder.title


@pytest.mark.parametrize(
    ("slug", "closest"),
    [("severstal", "severstal-steel-defect-detection"), ("carvana-image-masking", "carvana-image-masking-challenge"),
     ("carvanna-image-masking-chalenge", "carvana-image-masking-challenge"), ("airbus-ship-detection", None)],
)  # fmt: skip
def test_an_unknown_slug_from_the_demo_or_kaggle_names_the_known_ones_and_the_closest(slug, closest):
    for source in ("demo", "kaggle"):
        with pytest.raises(CompetitionError) as err:
            competition_class(slug, source)
        text = str(err.value)
        assert "\n" not in text and ", ".join(KNOWN) in text and "download.source local" in text
        assert (f"did you mean {closest}?" in text) if closest else "did you mean" not in text


def test_the_folder_competition_reads_carvana_s_layout_without_its_checks(tiny_demo):
    comp = open_competition(tiny_demo, "my-cars")
    assert type(comp) is Folder and not comp.strict
    assert comp.verify() == {"train": 48, "test": 16}
    assert comp.group_of(comp.train_names[0], "auto") == comp.train_names[0][:12]  # <prefix>_<NN>: by prefix
