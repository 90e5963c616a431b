"""A folder of your own data as a competition: `download.source: local` under a name this package does not know.

It is stored as every local import stores data (pipeline.download.layouts): in Carvana's file layout, train.zip,
train_masks.zip, test.zip, train_masks.csv and sample_submission.csv, one row-major run-length mask per image.
It is scored by the mean Dice per image (1 where both masks are empty), the most common metric of Kaggle's
segmentation competitions, and has none of a real competition's checks of file names and counts. Folds group the
images by name prefix when every name is `<prefix>_<NN>` (the views of one object), else image by image.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.competitions.carvana import Carvana


class Folder(Carvana):
    slug = ""  # no Kaggle competition: the data's own name is download.competition
    title = "a folder of your own (generic: Carvana's file layout, mean Dice per image)"
    group = "prefix"

    def __init__(self, root: Path, hq: bool = False, strict: bool = False):
        super().__init__(root, hq, strict)
        if self.class_names == ["background", "car"]:  # binary masks: no car here
            self.class_names = ["background", "foreground"]
