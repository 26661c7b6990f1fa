"""Which metrics the regression gate decides on, and with which rule. Pytest-free.

This is the one place that says it. Everything is recorded and reported; only figures named by the
allow-list :data:`GATED` are compared with a baseline and can fail a test: the figures a user ships
against (median and tail latency, throughput, memory, checkpoint size, energy per token, accuracy).
Everything else is a diagnostic: it explains a result (cross-check ratios, the client's self-check,
the roofline), repeats a gated figure (p90 and mean next to p50 and p99, requests/s next to
tokens/s, a cost that is a gated figure times a price) or describes the machine rather than the
code (memory bandwidth, load time). A figure of one's own is gated when its name matches the list;
the simplest way is a dotted ``<group>.<figure>`` name (``rag.recall_at_5``), the form lm-eval task
figures take. The README's list of gated figures is checked against :data:`GATED` by a test.
"""

from __future__ import annotations

from collections.abc import Container, Iterable
from fnmatch import fnmatchcase

#: the gated figures (fnmatch patterns over metric names); a name that matches none is a diagnostic
GATED: tuple[str, ...] = (
    # latency: the median and the tail a user feels; ITL p50 is TPOT p50 on a steady decode
    "ttft_p50_s",
    "ttft_p99_s",
    "tpot_p50_s",
    "tpot_p99_s",
    "e2e_p50_s",
    "e2e_p99_s",
    "itl_p99_s",
    # throughput: offline batches and each serving level
    "output_tokens_per_s",
    # memory: peak RSS on CPU; weights, KV cache and peaks on CUDA; the KV cache's capacity
    "peak_rss_bytes",
    "weights_bytes",
    "kv_cache_bytes",
    "cuda_peak_allocated_bytes",
    "cuda_peak_allocated_excl_kv_bytes",
    "cuda_peak_reserved_bytes",
    "kv_cache_tokens",
    "kv_cache_bytes_per_token",
    # the checkpoint on disk
    "checkpoint_bytes",
    "compression_ratio",
    "bits_per_parameter",
    # energy
    "j_per_output_token",
    # every figure of an lm-eval task (``<task>.<metric>[.<filter>]``: accuracy, perplexity, bits per
    # byte), and a user's own ``<group>.<figure>``
    "*.*",
    # pytest-benchmark's statistics of a timed call
    "benchmark_min_s",
    "benchmark_median_s",
    "benchmark_max_s",
)

#: names a :data:`GATED` pattern matches that are diagnostics all the same
DIAGNOSTICS: tuple[str, ...] = (
    "*.items_per_s",  # speed of an accuracy run: depends on few-shot context building, not on serving
    "*.retention",  # asserted by the retention test against its floor, not against a baseline
    "goodput_*",  # an SLO's key may hold a dot (goodput_ttft0.5_tpot0.03_rps): see docs/gates.md
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
    """Whether ``name`` is compared with its baseline: it matches :data:`GATED` and is not one of
    the :data:`DIAGNOSTICS` carved out of a pattern there."""
    return _any(name, GATED) and not _any(name, DIAGNOSTICS)


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


def family(entries: Iterable[str], test_keys: Container[str]) -> int:
    """The Bonferroni family one baseline file adds: its gated entries (``test key::metric``) whose
    test is among ``test_keys`` (the tests the session runs, whether or not they record the figure)."""
    count = 0
    for name in entries:
        test_key, _, metric = name.rpartition("::")
        if test_key in test_keys and is_gated(metric):
            count += 1
    return count
