"""Planning from the data, as nnU-Net plans: a fingerprint of the training data (`fingerprint.py`), rules that turn it
and the time given into the training, inference and post-processing values (`rules.py`, each value with its one-line
reason), and the plan's files (`plan.py`), which the stages read for every param set to `auto` (`resolve.py`, which
imports none of the others)."""
