"""Baselines and regression gates: the stored baseline files (``baseline``) and the
direction- and noise-aware decision rules (``rules``)."""
