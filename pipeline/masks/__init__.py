"""From probabilities to masks and back, shared by evaluate, predict and encode: run-length dialects, up-sampling
and the rules that make a mask (threshold, minimum object area), the metrics that choose those rules, and the
recipe that records them."""
