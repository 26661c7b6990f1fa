"""Which metrics the regression gate decides on, and with which rule. Pytest-free.

This is the one place that says it. Everything is recorded and reported; only *gated* metrics
are compared with a baseline and can fail a test. The rest are diagnostics: figures that
explain a result (cross-check ratios, the harness's own cost, accuracy-run speed) or repeat a
gated one (p90 and mean next to p50 and p99, requests/s next to tokens/s).
"""

from __future__ import annotations

from fnmatch import fnmatchcase

#: recorded and reported, never gated (fnmatch patterns over metric names)
DIAGNOSTICS: tuple[str, ...] = (
    "*.items_per_s",  # speed of an accuracy run: depends on few-shot context building, not on serving
    "*.retention",  # asserted by the retention test against its floor, not against a baseline
    "*_over_bf16",  # speed ratios against bf16: gated only by explicit thresholds
    "*_client_over_engine",
    "engine_*_s",  # the engine's own view of a latency, recorded for the cross-check
    "first_token_delivery_*",
    "harness_*",
    "*_p90_s",
    "*_mean_s",
    "itl_p50_s",  # the same figure as tpot_p50_s on a steady decode
    "requests_per_s",
    "total_tokens_per_s",
    "batch_latency_*",
    "saturation_*",  # the curve's knee and best rate: two fixed runs per level, a shape, not a gate
    "saturated_*",
    "quantize_*",
    "quantized_cache_*",
    "idle_power_w",
    "avg_power_w",
    "energy_j",
    "dynamic_*",
    "j_per_request",
    "mwh_per_output_token",
    "output_tokens_per_j",
)

#: deterministic for a given stack: compared exactly (equal passes, a change beyond tau is real)
EXACT: tuple[str, ...] = (
    "checkpoint_bytes",
    "compression_ratio",
    "bits_per_parameter",
    "kv_cache_bytes",
    "weights_bytes",
    "*perplexity",
    "*.bits_per_byte",
)


def _any(name: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatchcase(name, p) for p in patterns)


def is_gated(name: str) -> bool:
    """Whether ``name`` is compared with its baseline by default."""
    return not _any(name, DIAGNOSTICS)


def rule_for(name: str, *, has_items: bool) -> str:
    """``"items"`` (McNemar on per-item scores), ``"exact"`` or ``"sessions"``."""
    if has_items:
        return "items"
    if _any(name, EXACT):
        return "exact"
    return "sessions"


#: tails of a latency distribution: each spreads between sessions in its own way (measured on
#: this project's 2-core VM: ITL p99 10 %, TPOT p99 2 to 4 %), so none borrows another's spread
TAILS: tuple[str, ...] = ("*_p99_s", "*_p95_s", "*_p90_s", "*_max_s")


def spread_pool(name: str, unit: str | None) -> str | None:
    """The pool whose between-session spread a session-rule metric shares with its neighbours in
    the same baseline file (:func:`pytest_slm.compare.rules.fit_spread_prior`), or None for a
    metric that keeps its own: ``"speed"`` (median latencies, throughputs: the machine's speed
    moves them alike), ``"energy"``, ``"memory"``; tails keep their own."""
    if _any(name, TAILS) or not unit:
        return None
    if unit == "s" or unit.endswith("/s"):
        return "speed"
    if unit.startswith("J") or unit.endswith("/J"):
        return "energy"
    if unit == "bytes":
        return "memory"
    return None
