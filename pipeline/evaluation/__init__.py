"""The evaluate stage: full-resolution metrics with their accumulator, the evaluation loop, overlay pictures."""
