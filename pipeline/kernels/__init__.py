"""Kaggle kernels for code competitions: the bundle that `package` writes (the weights, the recipe, this project's
wheel and the wheels Kaggle's image lacks, the kernel script and its metadata), and what that script runs on
Kaggle, offline: the same prediction and encoding code as the predict and encode stages."""
