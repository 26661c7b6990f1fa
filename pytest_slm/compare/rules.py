"""Decision rules: did a metric really get worse than its baseline?

Each rule needs statistical evidence (a one-sided test at ``alpha``) *and* a practically
relevant change (beyond the tolerance ``tau``) before it says "regressed"; the same in the
other direction for "improved". When the run is too small to detect a change of ``tau`` and no
significant change was seen, the verdict is "inconclusive", never "pass".

- :func:`compare_repetitions`: latency-like metrics with per-repetition values (R >= 5 a side):
  one-sided Mann-Whitney U and the ratio of medians.
- :func:`compare_hierarchical`: a high percentile (p99) from per-run raw values: hierarchical
  bootstrap (resample runs, then values within runs).
- :func:`compare_few_runs`: throughput and energy: one-sided Welch t-test on log values and the
  ratio of geometric means.
- :func:`compare_paired_items`: accuracy on the same items: exact McNemar test on the discordant
  items and the drop in points.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

ALPHA = 0.01
MIN_REPETITIONS = 5
POWER_Z = 0.8416  # z for 80 % power, used for the minimum detectable effect
BOOTSTRAP = 2000


@dataclass(frozen=True)
class Comparison:
    """The verdict on one metric and the numbers behind it.

    ``ratio`` is current ÷ baseline (for accuracy: the change in points, current − baseline);
    ``ci_low``/``ci_high`` bound it; ``mde`` is the smallest change this run size could detect,
    on the same scale as ``tau``.
    """

    metric: str
    verdict: str  # "pass" | "regressed" | "improved" | "inconclusive"
    rule: str
    baseline_value: float
    current_value: float
    ratio: float
    ci_low: float
    ci_high: float
    p_value: float | None
    tau: float
    mde: float | None
    n_baseline: int
    n_current: int
    note: str = ""

    def message(self, baseline_file: str | None = None) -> str:
        scale = {
            "mcnemar": "change",
            "mann-whitney": "ratio of per-repetition medians",
            "welch-log": "ratio of geometric means",
        }.get(self.rule, "ratio")
        shown = (
            f"{100 * self.ratio:+.2f} points [{100 * self.ci_low:+.2f}, {100 * self.ci_high:+.2f}]"
            if self.rule == "mcnemar"
            else f"{self.ratio:.4f} [{self.ci_low:.4f}, {self.ci_high:.4f}]"
        )
        points = self.rule == "mcnemar"
        tau = f"{100 * self.tau:.2g} points" if points else f"{100 * self.tau:.3g} %"
        p = "n/a" if self.p_value is None else f"{self.p_value:.3g}"
        text = (
            f"{self.metric} {self.verdict}: baseline {self.baseline_value:.6g}, current {self.current_value:.6g}, "
            f"{scale} {shown} (95 % CI), p = {p}, tau = {tau}, rule {self.rule}, "
            f"n = {self.n_baseline}/{self.n_current}"
        )
        if self.mde is not None:
            text += f", detectable change {100 * self.mde:.3g}{' points' if points else ' %'}"
        if self.note:
            text += f"; {self.note}"
        if baseline_file:
            text += f" (baseline {baseline_file})"
        return text


def _finite(values: Sequence[float], what: str) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if arr.size == 0:
        raise ValueError(f"{what}: no values")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{what}: values must be finite")
    return arr


def _verdict(
    bad_p: float, good_p: float, worse_by: float, better_by: float, tau: float, mde: float | None, alpha: float
) -> str:
    if bad_p < alpha and worse_by > tau:
        return "regressed"
    if good_p < alpha and better_by > tau:
        return "improved"
    if mde is None or mde > tau:
        return "inconclusive"
    return "pass"


def _ratio_verdict(
    metric: str,
    rule: str,
    values: tuple[float, float],
    ratio: float,
    ci: tuple[float, float],
    p_up: float,
    p_down: float,
    *,
    higher_is_better: bool,
    tau: float,
    mde: float | None,
    alpha: float,
    counts: tuple[int, int],
    note: str = "",
) -> Comparison:
    """The verdict for a ratio-scale rule, given one-sided p-values for "current is higher" (``p_up``)
    and "current is lower" (``p_down``); direction decides which of them means worse."""
    bad_p, good_p = (p_down, p_up) if higher_is_better else (p_up, p_down)
    worse_by = (1 - ratio) if higher_is_better else (ratio - 1)
    return Comparison(
        metric,
        _verdict(bad_p, good_p, worse_by, -worse_by, tau, mde, alpha),
        rule,
        values[0],
        values[1],
        ratio,
        ci[0],
        ci[1],
        min(bad_p, good_p),
        tau,
        mde,
        counts[0],
        counts[1],
        note,
    )


def _too_few(metric: str, rule: str, b: np.ndarray, c: np.ndarray, tau: float, need: int) -> Comparison:
    return Comparison(
        metric,
        "inconclusive",
        rule,
        float(np.median(b)),
        float(np.median(c)),
        float("nan"),
        float("nan"),
        float("nan"),
        None,
        tau,
        None,
        b.size,
        c.size,
        note=f"needs at least {need} repetitions on each side (baseline has {b.size}, current {c.size}); "
        f"raise --slm-num-runs",
    )


def compare_repetitions(
    metric: str,
    baseline: Sequence[float],
    current: Sequence[float],
    *,
    higher_is_better: bool,
    tau: float = 0.05,
    alpha: float = ALPHA,
    seed: int = 0,
) -> Comparison:
    """Per-repetition values of a latency-like statistic: Mann-Whitney U and the ratio of medians."""
    b, c = _finite(baseline, f"{metric} baseline"), _finite(current, f"{metric} current")
    if b.size < MIN_REPETITIONS or c.size < MIN_REPETITIONS:
        return _too_few(metric, "mann-whitney", b, c, tau, MIN_REPETITIONS)
    mb, mc = float(np.median(b)), float(np.median(c))
    if mb <= 0:
        raise ValueError(f"{metric}: the baseline median must be positive for a ratio, got {mb}")
    ratio = mc / mb
    if np.ptp(np.concatenate([b, c])) == 0:  # identical constants: no evidence of change either way
        greater_p = less_p = 1.0
    else:
        greater_p = float(stats.mannwhitneyu(c, b, alternative="greater").pvalue)
        less_p = float(stats.mannwhitneyu(c, b, alternative="less").pvalue)
    rng = np.random.default_rng(seed)
    boots = np.median(rng.choice(c, (BOOTSTRAP, c.size)), axis=1) / np.median(
        rng.choice(b, (BOOTSTRAP, b.size)), axis=1
    )
    lo, hi = (float(x) for x in np.percentile(boots, [2.5, 97.5]))
    return _ratio_verdict(
        metric,
        "mann-whitney",
        (mb, mc),
        ratio,
        (lo, hi),
        greater_p,
        less_p,
        higher_is_better=higher_is_better,
        tau=tau,
        mde=_mde_log(b, c, alpha),
        alpha=alpha,
        counts=(b.size, c.size),
    )


def _mde_log(b: np.ndarray, c: np.ndarray, alpha: float) -> float | None:
    """Smallest relative change detectable at ``alpha`` with 80 % power (normal approximation on logs)."""
    if np.any(b <= 0) or np.any(c <= 0):
        return None
    lb, lc = np.log(b), np.log(c)
    se = math.sqrt(np.var(lb, ddof=1) / b.size + np.var(lc, ddof=1) / c.size)
    z = stats.norm.ppf(1 - alpha) + POWER_Z
    return math.expm1(z * se) if se > 0 else 0.0


def compare_few_runs(
    metric: str,
    baseline: Sequence[float],
    current: Sequence[float],
    *,
    higher_is_better: bool,
    tau: float = 0.05,
    alpha: float = ALPHA,
) -> Comparison:
    """Throughput or energy from a few runs: one-sided Welch t-test on logs, geometric-mean ratio."""
    b, c = _finite(baseline, f"{metric} baseline"), _finite(current, f"{metric} current")
    if np.any(b <= 0) or np.any(c <= 0):
        raise ValueError(f"{metric}: the few-runs rule works on logs and needs positive values")
    if b.size < 2 or c.size < 2:
        return _too_few(metric, "welch-log", b, c, tau, 2)
    lb, lc = np.log(b), np.log(c)
    gb, gc = float(np.exp(lb.mean())), float(np.exp(lc.mean()))
    ratio = gc / gb
    vb, vc = np.var(lb, ddof=1) / b.size, np.var(lc, ddof=1) / c.size
    se = math.sqrt(vb + vc)
    if se == 0:  # zero variance on both sides: the change is exact, but a t-test is undefined
        greater_p = 0.0 if lc.mean() > lb.mean() else 1.0
        less_p = 0.0 if lc.mean() < lb.mean() else 1.0
        lo = hi = ratio
        mde = 0.0
        note = "zero variance on both sides: compared exactly"
    else:
        greater_p = float(stats.ttest_ind(lc, lb, equal_var=False, alternative="greater").pvalue)
        less_p = float(stats.ttest_ind(lc, lb, equal_var=False, alternative="less").pvalue)
        dof = (vb + vc) ** 2 / (vb**2 / (b.size - 1) + vc**2 / (c.size - 1)) if vb + vc > 0 else 1.0
        half = stats.t.ppf(0.975, dof) * se
        lo, hi = math.exp(math.log(ratio) - half), math.exp(math.log(ratio) + half)
        mde = math.expm1((stats.t.ppf(1 - alpha, dof) + POWER_Z) * se)
        note = ""
    return _ratio_verdict(
        metric,
        "welch-log",
        (gb, gc),
        ratio,
        (lo, hi),
        greater_p,
        less_p,
        higher_is_better=higher_is_better,
        tau=tau,
        mde=mde,
        alpha=alpha,
        counts=(b.size, c.size),
        note=note,
    )


def compare_paired_items(
    metric: str, baseline: Sequence[float], current: Sequence[float], *, tau_points: float = 0.01, alpha: float = ALPHA
) -> Comparison:
    """Per-item correctness (0/1) on the same items: exact McNemar test and the change in points."""
    if len(baseline) != len(current):
        raise ValueError(
            f"{metric}: paired items need the same items; baseline has {len(baseline)}, current {len(current)}"
        )
    b, c = _finite(baseline, f"{metric} baseline"), _finite(current, f"{metric} current")
    if not (np.isin(b, (0.0, 1.0)).all() and np.isin(c, (0.0, 1.0)).all()):
        raise ValueError(f"{metric}: paired items must be scored 0 or 1")
    n = b.size
    lost = int(np.sum((b == 1) & (c == 0)))
    gained = int(np.sum((b == 0) & (c == 1)))
    diff = (gained - lost) / n  # current − baseline, as a fraction (0.01 = one point)
    discordant = lost + gained
    if discordant == 0:
        bad_p = good_p = 1.0
    else:
        bad_p = float(stats.binomtest(lost, discordant, 0.5, alternative="greater").pvalue)
        good_p = float(stats.binomtest(gained, discordant, 0.5, alternative="greater").pvalue)
    # paired difference standard error (for the CI and the detectable change)
    d = c - b
    se = float(np.std(d, ddof=1) / math.sqrt(n)) if n > 1 else float("inf")
    z = stats.norm.ppf(0.975)
    mde = (stats.norm.ppf(1 - alpha) + POWER_Z) * max(se, 1 / n) if n > 1 else None
    verdict = _verdict(bad_p, good_p, -diff, diff, tau_points, mde, alpha)
    return Comparison(
        metric,
        verdict,
        "mcnemar",
        float(b.mean()),
        float(c.mean()),
        diff,
        diff - z * se,
        diff + z * se,
        min(bad_p, good_p),
        tau_points,
        mde,
        n,
        n,
        note=f"{lost} items lost, {gained} gained",
    )


def compare_hierarchical(
    metric: str,
    baseline_runs: Sequence[Sequence[float]],
    current_runs: Sequence[Sequence[float]],
    *,
    q: float = 99.0,
    higher_is_better: bool = False,
    tau: float = 0.05,
    alpha: float = ALPHA,
    seed: int = 0,
    iterations: int = BOOTSTRAP,
) -> Comparison:
    """A high percentile from raw per-run values: resample runs, then values within each run."""
    b_runs = [np.asarray(r, dtype=float) for r in baseline_runs if len(r)]
    c_runs = [np.asarray(r, dtype=float) for r in current_runs if len(r)]
    if len(b_runs) < MIN_REPETITIONS or len(c_runs) < MIN_REPETITIONS:
        flat_b = np.concatenate(b_runs) if b_runs else np.array([math.nan])
        flat_c = np.concatenate(c_runs) if c_runs else np.array([math.nan])
        return _too_few(
            metric, "hierarchical-bootstrap", flat_b[: len(b_runs)], flat_c[: len(c_runs)], tau, MIN_REPETITIONS
        )
    rng = np.random.default_rng(seed)

    def boot(runs: list[np.ndarray]) -> np.ndarray:
        out = np.empty(iterations)
        for i in range(iterations):
            picked = [runs[j] for j in rng.integers(0, len(runs), len(runs))]
            out[i] = np.percentile(np.concatenate([rng.choice(r, r.size) for r in picked]), q)
        return out

    pb = float(np.percentile(np.concatenate(b_runs), q))
    pc = float(np.percentile(np.concatenate(c_runs), q))
    ratios = boot(c_runs) / boot(b_runs)
    ratio = pc / pb
    lo, hi = (float(x) for x in np.percentile(ratios, [2.5, 97.5]))
    # one-sided bootstrap p-values: share of resampled ratios on the other side of 1
    p_up, p_down = float(np.mean(ratios <= 1)), float(np.mean(ratios >= 1))
    spread = (hi - lo) / 2 / max(ratio, 1e-12)
    return _ratio_verdict(
        metric,
        "hierarchical-bootstrap",
        (pb, pc),
        ratio,
        (lo, hi),
        p_up,
        p_down,
        higher_is_better=higher_is_better,
        tau=tau,
        mde=spread,
        alpha=alpha,
        counts=(len(b_runs), len(c_runs)),
    )
