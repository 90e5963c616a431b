"""The predict stage: one predictor from checkpoints, inference with TTA, shards of probabilities, ONNX."""
