"""Carvana Image Masking Challenge pipeline, grouped as it runs: download -> data -> models -> training ->
evaluation -> prediction -> submission, with rle, runtime, params and provenance shared between them."""

__version__ = "0.1.0"
