"""Carvana Image Masking Challenge pipeline: data, U-Net models, training, prediction, submission."""

__version__ = "0.1.0"
