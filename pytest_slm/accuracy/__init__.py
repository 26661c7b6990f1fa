"""Accuracy through lm-evaluation-harness on the session's engine (no second engine).

``lm`` wraps an engine as an lm-eval ``LM``; ``tasks`` writes the local task configs; and
``evaluate`` runs one task and turns lm-eval's results into metrics with stderr and direction.
"""
