"""Interoperation with other tools (pytest-benchmark, Weights & Biases)."""
