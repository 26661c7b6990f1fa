"""The decision rules on their own: sessions, exact, paired items, the family, the policy."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest
from scipy import special, stats

from pytest_slm.compare import identity, policy
from pytest_slm.compare.baseline import HISTORY, merge_entry, sessions_of
from pytest_slm.compare.judge import baseline_spread, compare_metric, incomparable
from pytest_slm.compare.rules import (
    MAX_DF,
    SpreadPrior,
    compare_exact,
    compare_paired_items,
    compare_sessions,
    fit_spread_prior,
    se_log,
)
from pytest_slm.record import Metric

#: an illustrative history of ten sessions' TPOT p50 (s) with about 0.6 % between-session spread (synthetic)
TPOT_SESSIONS_S = [0.03170, 0.03182, 0.03165, 0.03201, 0.03176, 0.03188, 0.03171, 0.03195, 0.03180, 0.03168]


def sessions(
    values: list[float], current: float, se: float = 0.01, hib: bool = False, k_min: int = 3, alpha: float = 0.01
):  # type: ignore[no-untyped-def]
    return compare_sessions(
        "m", values, [se] * len(values), current, se, higher_is_better=hib, tau=0.05, alpha=alpha, min_sessions=k_min
    )


def test_steady_sessions_aa_passes_and_a_ten_percent_slowdown_regresses() -> None:
    history, latest = TPOT_SESSIONS_S[:-1], TPOT_SESSIONS_S[-1]
    aa = sessions(history, latest, se=0.005)
    assert aa.verdict == "pass" and aa.rule == "sessions-t", aa.message()
    slow = sessions(history, latest * 1.10, se=0.005)
    assert slow.verdict == "regressed", slow.message()
    assert slow.ratio == pytest.approx(latest * 1.10 / math.exp(sum(map(math.log, history)) / len(history)))
    assert slow.ci_low < slow.ratio < slow.ci_high and slow.p_value is not None and slow.p_value < 0.01


def test_direction_matters() -> None:
    history = [100.0, 101.0, 99.0, 100.5]
    assert sessions(history, 80.0, se=0.005, hib=True).verdict == "regressed"
    assert sessions(history, 80.0, se=0.005, hib=False).verdict == "improved"


def test_a_significant_change_smaller_than_tau_passes() -> None:
    history = [1.0, 1.001, 0.999, 1.0005, 0.9995]
    c = sessions(history, 1.03, se=0.0005)
    assert c.p_value is not None and c.p_value < 0.01 and c.verdict == "pass"


def test_noisy_sessions_make_the_gate_inconclusive_not_pass() -> None:
    history = [1.0, 1.3, 0.8, 1.2, 0.9]
    c = sessions(history, 1.0, se=0.01)
    assert c.verdict == "inconclusive" and c.mde is not None and c.mde > 0.05


#: nine sessions about 1.3 % apart (log sd), as a p50 of this CPU's A/A sessions (synthetic)
NINE = [math.exp(0.015 * z) for z in (-1.2, -0.6, 0.0, 0.6, 1.2, -0.3, 0.3, -0.9, 0.9)]


def test_pass_is_a_non_inferiority_claim() -> None:
    """Pass = worse by less than tau with 95 % one-sided confidence; it does not need the (larger)
    change detectable at the family's Bonferroni level."""
    alpha = 0.05 / 21  # a session of 21 gated comparisons
    same = sessions(NINE, 1.0, se=0.001, alpha=alpha)
    assert same.verdict == "pass" and same.mde is not None and same.mde > 0.05, same.message()
    # 4 % worse: not beyond tau, but its upper bound is: neither pass nor regressed
    worse = sessions(NINE, 1.04, se=0.001, alpha=alpha)
    assert worse.verdict == "inconclusive", worse.message()
    # 3 % better: the bad direction's bound is far below tau
    assert sessions(NINE, 0.97, se=0.001, alpha=alpha).verdict == "pass"
    # throughput (higher is better): 4 % lower is the bad direction
    assert sessions(NINE, 1 / 1.04, se=0.001, hib=True, alpha=alpha).verdict == "inconclusive"
    assert sessions(NINE, 1.0, se=0.001, hib=True, alpha=alpha).verdict == "pass"


def test_mcnemar_pass_needs_enough_items() -> None:
    base = [1.0, 0.0] * 500
    cur = list(base)
    for i in range(0, 10, 2):  # 5 items lost, 5 gained: no change, tight bound
        cur[i], cur[i + 1] = 0.0, 1.0
    assert compare_paired_items("acc", base, cur, tau_points=0.01).verdict == "pass"
    small_base = [1.0, 0.0] * 20
    small = list(small_base)
    small[0], small[1], small[2], small[3] = 0.0, 1.0, 0.0, 1.0  # 2 lost, 2 gained of 40: bound ~8 points
    assert compare_paired_items("acc", small_base, small, tau_points=0.01).verdict == "inconclusive"


def test_too_few_sessions_never_call_a_regression() -> None:
    c = sessions([1.0], 1.5, se=0.01)
    assert c.verdict == "inconclusive" and c.rule == "within-session"
    assert "the gate needs 3" in c.note and "+50.0 % change" in c.note
    assert sessions([1.0], 1.5, se=0.01, k_min=1).verdict == "regressed"


def test_zero_noise_compares_exactly() -> None:
    assert sessions([0.02, 0.02, 0.02], 0.02, se=0.0).verdict == "pass"
    assert sessions([0.02, 0.02, 0.02], 0.025, se=0.0).verdict == "regressed"


def test_exact_rule() -> None:
    assert compare_exact("checkpoint_bytes", 100.0, 100.0, higher_is_better=False).verdict == "pass"
    assert compare_exact("checkpoint_bytes", 100.0, 120.0, higher_is_better=False).verdict == "regressed"
    assert compare_exact("compression_ratio", 2.0, 2.5, higher_is_better=True).verdict == "improved"
    small = compare_exact("checkpoint_bytes", 100.0, 103.0, higher_is_better=False)
    assert small.verdict == "pass" and small.note == "changed by +3 % (within tau)"  # named, never hidden
    assert compare_exact("checkpoint_bytes", 100.0, 100.0, higher_is_better=False).note == "identical"
    acc = compare_exact("gsm8k.exact_match", 0.40, 0.37, higher_is_better=True, tau=0.01, points=True)
    assert acc.verdict == "regressed" and acc.ratio == pytest.approx(-0.03) and "-3.00 points" in acc.note


def test_mcnemar_identical_items_pass_and_lost_items_regress() -> None:
    items = [1.0, 0.0] * 500
    same = compare_paired_items("acc", items, items, tau_points=0.01)
    assert same.verdict == "pass" and "identical" in same.note
    worse = list(items)
    for i in range(0, 200, 2):  # 100 correct answers lost, none gained: a 10-point drop
        worse[i] = 0.0
    c = compare_paired_items("acc", items, worse, tau_points=0.01, alpha=0.001)
    assert c.verdict == "regressed" and c.ratio == pytest.approx(-0.10)
    with pytest.raises(ValueError, match="same items"):
        compare_paired_items("acc", [1.0], [1.0, 0.0])


def test_policy_gates_primary_figures_only() -> None:
    assert policy.is_gated("tpot_p50_s") and policy.is_gated("ttft_p99_s") and policy.is_gated("slm_mc.acc")
    for name in ("ttft_p90_s", "tpot_mean_s", "slm_mc.items_per_s", "ttft_client_over_engine", "harness_offline_ratio"):
        assert not policy.is_gated(name), name
    assert policy.rule_for("checkpoint_bytes", has_items=False) == "exact"
    assert policy.rule_for("slm_ppl.word_perplexity", has_items=False) == "exact"
    assert policy.rule_for("slm_mc.acc", has_items=True) == "items"
    assert policy.rule_for("tpot_p50_s", has_items=False) == "sessions"


def test_compare_metric_picks_the_rule() -> None:
    items = Metric("slm_mc.acc", 0.5, "1", True, samples=(1.0, 0.0), info={"task": "slm_mc"})
    assert compare_metric(items, {"value": 0.5, "samples": [1.0, 0.0]}).rule == "mcnemar"
    size = Metric("checkpoint_bytes", 100, "B", False)
    assert compare_metric(size, {"value": 100}).rule == "exact"
    tpot = Metric("tpot_p50_s", 0.02, "s", False, samples=(0.02, 0.021, 0.019), info={"se_log": 0.01})
    entry = merge_entry(None, {"value": 0.02, "se_log": 0.01}, reset=False)
    assert compare_metric(tpot, entry).rule == "within-session"


def test_session_history_grows_and_resets() -> None:
    entry = None
    for i in range(HISTORY + 3):
        entry = merge_entry(entry, {"value": float(i + 1), "se_log": 0.01}, reset=False)
    assert entry is not None
    assert [s["value"] for s in sessions_of(entry)] == [float(i + 1) for i in range(3, HISTORY + 3)]
    reset = merge_entry(entry, {"value": 99.0}, reset=True)
    assert [s["value"] for s in sessions_of(reset)] == [99.0]
    assert sessions_of({"value": 5.0}) == [{"value": 5.0, "se_log": None, "saved_at": None}]


def test_workload_identity_differences_are_named() -> None:
    a = identity.metric_identity({"engine.max_model_len": 2048}, {"workload": {"concurrency": 8}})
    b = identity.metric_identity({"engine.max_model_len": 2048}, {"workload": {"concurrency": 16}})
    assert identity.digest(a) != identity.digest(b)
    row = incomparable("tpot_p50_s", a, b)
    assert row is not None and row["note"] == "concurrency was 8, is 16"
    assert incomparable("tpot_p50_s", a, dict(a)) is None


def test_se_log() -> None:
    assert se_log([1.0]) is None
    assert se_log([1.0, 1.0, 1.0]) == 0.0


def test_spread_prior_pools_alike_variances_and_borrows_little_from_unlike_ones() -> None:
    alike = fit_spread_prior([0.0004, 0.0005, 0.0003, 0.0004, 0.00045], [4] * 5)
    assert alike is not None and alike.metrics == 5
    assert alike.df == pytest.approx(20)  # no spread beyond sampling: capped at the pool's 20 df
    assert math.sqrt(alike.variance) == pytest.approx(math.sqrt(0.00041), rel=0.15)  # near their mean
    unlike = fit_spread_prior([0.0001, 0.01, 0.0004, 0.0025, 0.00002], [4] * 5)
    assert unlike is not None and unlike.df < 3  # the metrics spread differently: a weak prior
    assert fit_spread_prior([0.0004, 0.0005], [4, 4]) is None  # too few metrics to fit a prior
    # a spread barely beyond sampling noise puts trigamma's root past any fixed bracket: no solver error
    delta = math.sqrt((float(special.polygamma(1, 5e8)) + 3e-9) * 2 / 3)
    barely = fit_spread_prior([1e-4 * math.exp(x) for x in (-delta, 0.0, delta)], [1e9] * 3)
    assert barely is not None and 0 < barely.df <= 3e9
    # any pool: a prior with positive variance and 0 < df <= the pool's own df
    rng = np.random.default_rng(0)
    for _ in range(500):
        dfs = rng.integers(1, 10, size=int(rng.integers(3, 15)))
        found = fit_spread_prior(list(rng.lognormal(-8, rng.uniform(0, 3), size=dfs.size)), list(dfs))
        assert found is not None and found.variance > 0 and 0 < found.df <= dfs.sum()
    assert fit_spread_prior([0.0004, 0.0, 0.0005], [4, 4, 4]) is None  # zero variance carries no log


def test_a_moderated_spread_finds_a_slowdown_its_own_four_sessions_cannot() -> None:
    """Five saved sessions that spread 2.6 % (log): alone, the t test with 4 df at the session's
    Bonferroni level cannot call a 13 % slowdown; with the pool's prior (2 %, the metric's own 4
    df of weight) it does, and an unchanged session passes."""
    history = [0.0300, 0.0310, 0.0290, 0.0305, 0.0295]
    alpha = 0.05 / 21
    prior = SpreadPrior(variance=0.02**2, df=28, metrics=7)
    own = compare_sessions("tpot_p50_s", history, [None] * 5, 0.034, None, higher_is_better=False, alpha=alpha)
    pooled = compare_sessions("tpot_p50_s", history, [None] * 5, 0.034, None, higher_is_better=False, alpha=alpha,
                              prior=prior)  # fmt: skip
    assert own.verdict == "inconclusive" and pooled.verdict == "regressed"
    assert "moderated to" in pooled.note and "7 metrics" in pooled.note and "4 df" in pooled.note
    assert pooled.mde is not None and own.mde is not None and pooled.mde < own.mde
    same = compare_sessions("tpot_p50_s", history, [None] * 5, 0.030, None, higher_is_better=False, alpha=alpha,
                            prior=prior)  # fmt: skip
    assert same.verdict == "pass"


def test_the_prior_cannot_make_a_noisy_metric_look_steady() -> None:
    """A metric whose own sessions spread 8 % keeps most of it: the prior weighs no more than its
    own sessions, so a steady pool (1 %) cannot turn its 12 % excursion into a regression."""
    history = [0.030, 0.033, 0.028, 0.031, 0.027]
    prior = SpreadPrior(variance=0.01**2, df=200, metrics=7)
    c = compare_sessions("e2e_p50_s", history, [None] * 5, 0.0335, None, higher_is_better=False, alpha=0.05 / 21,
                         prior=prior)  # fmt: skip
    assert c.verdict == "inconclusive"


def test_the_t_reference_never_exceeds_max_df() -> None:
    """Ten saved sessions and a strong prior still test against t with MAX_DF degrees of freedom
    (session-to-session changes here are heavier-tailed than a normal law)."""
    history = [0.030 * (1 + 0.02 * ((i % 3) - 1)) for i in range(10)]
    prior = SpreadPrior(variance=0.016**2, df=100, metrics=7)
    c = compare_sessions("tpot_p50_s", history, [None] * 10, 0.0315, None, higher_is_better=False, alpha=0.05 / 21,
                         prior=prior)  # fmt: skip
    logs = [math.log(v) for v in history]
    own = statistics.variance(logs)
    sd = math.sqrt((9 * prior.variance + 9 * own) / 18 * (1 + 1 / 10))  # the prior weighs its own 9 df
    # the 95 % half-width is t(MAX_DF) times that sd, not t(18): the test cannot pass on the wrong df
    assert math.log(c.ci_high / c.ratio) == pytest.approx(stats.t.ppf(0.975, MAX_DF) * sd)
    assert math.log(c.ci_high / c.ratio) != pytest.approx(stats.t.ppf(0.975, 18) * sd, rel=1e-3)
    assert "9 df" in c.note


def test_baseline_spread_pools_median_speeds_and_leaves_tails_alone() -> None:
    def entry(unit: str, *values: float, probe: float | None = None) -> dict:  # type: ignore[type-arg]
        sessions = [{"value": v, "se_log": 0.005} for v in values]
        if probe is not None:
            for i, s in enumerate(sessions):
                s["machine"] = {"probe_s": probe * (1 + 0.01 * (i % 2)), "kernel": "k/1", "device": "cpu"}
        return {"value": values[-1], "unit": unit, "samples": [values[-1]] * 3, "sessions": sessions}

    entries = {
        "test_tpot[a]::tpot_p50_s": entry("s", 0.030, 0.031, 0.0295, 0.0305, probe=0.006),
        "test_ttft[a]::ttft_p50_s": entry("s", 0.100, 0.102, 0.098, 0.101, probe=0.006),
        "test_offline_throughput[a]::output_tokens_per_s": entry("tokens/s", 300, 306, 297, 303),
        "test_ttft[a]::ttft_p99_s": entry("s", 0.2, 0.3, 0.25, 0.22),  # a tail keeps its own spread
        "test_memory[a]::kv_cache_bytes": entry("bytes", 1e9, 1e9, 1e9, 1e9),  # exact rule
        "test_x[a]::harness_overhead_s": entry("s", 0.01, 0.02, 0.015, 0.012),  # a diagnostic
    }
    spread = baseline_spread(entries)
    assert set(spread.priors) == {"speed"} and spread.priors["speed"].metrics == 3
    assert policy.spread_pool("ttft_p99_s", "s") is None and policy.spread_pool("tpot_p50_s", "s") == "speed"
    assert policy.spread_pool("output_tokens_per_j", "tokens/J") == "energy"
    kernel = spread.kernel("k/1", "cpu")
    assert kernel is not None and kernel[1] == 3.0  # the two windows have the same times: counted once
    assert spread.kernel("k/2", "cpu") is None
