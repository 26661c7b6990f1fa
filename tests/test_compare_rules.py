"""Decision rules: each rule's edge cases, directions and noise handling."""

from __future__ import annotations

import numpy as np
import pytest

from pytest_slm.compare.gate import compare_metric
from pytest_slm.compare.rules import (
    compare_few_runs,
    compare_hierarchical,
    compare_paired_items,
    compare_repetitions,
)
from pytest_slm.record import Metric

_draws = iter(range(10**6))


def noisy(center: float, n: int, cv: float = 0.03) -> list[float]:
    """Log-normal values; each call in a test gets its own seed, so tests do not depend on order."""
    return list(center * np.exp(np.random.default_rng(next(_draws)).normal(0, cv, n)))


@pytest.fixture(autouse=True)
def _fresh_seeds() -> None:
    global _draws
    _draws = iter(range(10**6))


def test_repetitions_detect_a_latency_regression_with_ci_and_p() -> None:
    c = compare_repetitions("ttft_p50_s", noisy(0.05, 20), noisy(0.06, 20), higher_is_better=False)
    assert c.verdict == "regressed" and c.p_value is not None and c.p_value < 0.01
    assert c.ci_low < c.ratio < c.ci_high and c.ratio == pytest.approx(1.2, rel=0.05)
    msg = c.message("baselines/x.json")
    assert f"baseline {c.baseline_value:.6g}, current {c.current_value:.6g}" in msg
    assert all(s in msg for s in ("medians 1.", "(95 % CI)", "p = ", "tau = 5 %", "baselines/x.json"))


def test_direction_matters() -> None:
    faster = compare_repetitions("tokens_per_s", noisy(100, 20), noisy(120, 20), higher_is_better=True)
    assert faster.verdict == "improved"
    slower = compare_repetitions("tokens_per_s", noisy(100, 20), noisy(80, 20), higher_is_better=True)
    assert slower.verdict == "regressed"


def test_aa_passes_when_the_run_can_detect_tau() -> None:
    c = compare_repetitions("tpot_p50_s", noisy(0.02, 30, 0.01), noisy(0.02, 30, 0.01), higher_is_better=False)
    assert c.verdict == "pass" and c.mde is not None and c.mde < 0.05


def test_significant_but_smaller_than_tau_is_not_a_regression() -> None:
    c = compare_repetitions("x_s", noisy(1.0, 200, 0.005), noisy(1.02, 200, 0.005), higher_is_better=False)
    assert c.p_value is not None and c.p_value < 0.01 and c.verdict == "pass"


def test_too_small_to_detect_tau_is_inconclusive() -> None:
    c = compare_repetitions("x_s", noisy(1.0, 6, 0.3), noisy(1.0, 6, 0.3), higher_is_better=False)
    assert c.verdict == "inconclusive" and c.mde is not None and c.mde > 0.05


def test_too_few_repetitions_says_how_many() -> None:
    c = compare_repetitions("x_s", [1.0, 1.1, 0.9], noisy(1.0, 10), higher_is_better=False)
    assert c.verdict == "inconclusive" and "needs at least 5 repetitions" in c.note and "baseline has 3" in c.note


def test_ties_and_zero_variance() -> None:
    same = compare_repetitions("x_s", [0.02] * 6, [0.02] * 6, higher_is_better=False)
    assert same.verdict == "pass" and same.ratio == 1.0
    shifted = compare_repetitions("x_s", [0.02] * 6, [0.03] * 6, higher_is_better=False)
    assert shifted.verdict == "regressed"
    runs = compare_few_runs("tok_s", [100.0, 100.0], [80.0, 80.0], higher_is_better=True)
    assert runs.verdict == "regressed" and "zero variance" in runs.note


def test_few_runs_welch_on_logs() -> None:
    c = compare_few_runs("output_tokens_per_s", noisy(200, 5, 0.02), noisy(170, 5, 0.02), higher_is_better=True)
    assert c.verdict == "regressed" and c.rule == "welch-log" and c.ci_high < 1
    aa = compare_few_runs("energy_j", noisy(500, 5, 0.01), noisy(500, 5, 0.01), higher_is_better=False)
    assert aa.verdict in ("pass", "inconclusive") and aa.verdict != "regressed"
    with pytest.raises(ValueError, match="needs positive values"):
        compare_few_runs("x", [0.0, 1.0], [1.0, 1.0], higher_is_better=True)


def test_mcnemar_on_paired_items() -> None:
    base = [1.0] * 300 + [0.0] * 700
    worse = list(base)
    for i in range(0, 80):  # lose 80 items, gain 20: -6 points
        worse[i] = 0.0
    for i in range(300, 320):
        worse[i] = 1.0
    c = compare_paired_items("gsm8k.exact_match", base, worse)
    assert c.verdict == "regressed" and c.ratio == pytest.approx(-0.06) and "80 items lost, 20 gained" in c.note
    assert "-6.00 points" in c.message()
    assert compare_paired_items("acc", base, base).verdict == "pass"
    with pytest.raises(ValueError, match="baseline has 3, current 2"):
        compare_paired_items("acc", [1, 0, 1], [1, 0])
    with pytest.raises(ValueError, match="scored 0 or 1"):
        compare_paired_items("acc", [0.5], [1.0])


def test_hierarchical_p99() -> None:
    base = [noisy(0.05, 8, 0.1) for _ in range(10)]
    slow = [noisy(0.07, 8, 0.1) for _ in range(10)]
    assert compare_hierarchical("ttft_p99_s", base, slow, iterations=400).verdict == "regressed"
    assert compare_hierarchical("ttft_p99_s", base[:3], slow, iterations=50).verdict == "inconclusive"


def test_gate_picks_the_rule_from_the_metric() -> None:
    lat = Metric("ttft_p50_s", 0.06, "s", False, samples=tuple(noisy(0.06, 10)))
    assert compare_metric(lat, {"value": 0.05, "samples": noisy(0.05, 10)}).rule == "mann-whitney"
    tps = Metric("output_tokens_per_s", 90, "token/s", True, samples=(90.0, 91.0, 89.0))
    assert compare_metric(tps, {"value": 100, "samples": [100.0, 101.0, 99.0]}).rule == "welch-log"
    acc = Metric("gsm8k.exact_match", 0.5, "1", True, samples=(1.0, 0.0), info={"task": "gsm8k"})
    assert compare_metric(acc, {"value": 0.5, "samples": [0.0, 1.0]}).rule == "mcnemar"
    size = Metric("checkpoint_bytes", 2e8, "B", False)
    assert compare_metric(size, {"value": 1e8}).verdict == "regressed"
    load = Metric("engine_load_s", 40.0, "s", False)
    c = compare_metric(load, {"value": 30.0})
    assert c.verdict == "inconclusive" and "no per-repetition values" in c.note
