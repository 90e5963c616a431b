"""The encode and submit stages: post-processing to full size, run-length encoding, the file, the upload."""
