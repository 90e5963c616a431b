"""kaggle-segmentation: Kaggle's segmentation competitions from the data to a scored submission, grouped as it runs:
download -> data -> models -> training -> evaluation -> prediction -> submission, over the competitions (one module
each) and the masks layer (run-length dialects, post-processing, metrics), with images, runtime, params and
provenance shared by all."""

__version__ = "0.2.0"
