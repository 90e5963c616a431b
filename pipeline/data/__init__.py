"""What the model sees (split and train stages): image decoding, datasets and preprocessing, augmentation, folds."""
