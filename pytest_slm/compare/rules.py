"""Decision rules: did a metric really get worse than its baseline? Pytest-free.

The unit of evidence is the **session**: repetitions inside one session share the machine's
state, so their spread says nothing about how much the next session on the same machine will
differ. Each rule therefore needs a change that is larger than the noise it models *and* larger
than the tolerance ``tau`` before it says "regressed" (or "improved"), at the session's
per-comparison level ``alpha``. It says "pass" only when the data show the figure got worse by
less than ``tau`` with :data:`PASS_CONFIDENCE` one-sided confidence (a non-inferiority test: the
upper confidence bound of the change is below ``tau``); anything else is "inconclusive", with the
change the comparison could have detected (``mde``).

- :func:`compare_sessions` (timings, throughput, memory, energy): the current session's figure
  against the last K saved sessions' figures, on logs, with a t prediction interval whose spread
  is the between-session standard deviation (floored by the within-session standard errors).
  With fewer than ``min_sessions`` saved sessions the between-session spread is unknown: every
  figure is then "inconclusive" (a change beyond this session's own noise is never "regressed",
  and one within it never "pass": within-session noise predicts the next session poorly).
  A handful of saved sessions estimates a spread poorly (4 degrees of freedom at K = 5), so the
  spread is *moderated*: shrunk towards a prior fitted on the spreads of the other metrics of its
  pool in the same baseline file (:func:`fit_spread_prior`, the empirical-Bayes variance
  moderation of Smyth's limma), which also adds the prior's degrees of freedom to the t test
  (the prior weighing at most as much as the metric's own sessions, and the t having at most
  :data:`MAX_DF` degrees of freedom: the spread's tails are heavier than a normal law's).
- :func:`compare_exact` (sizes, compression, perplexity, anything deterministic): equal is
  pass; a change beyond ``tau`` is real and gets its direction's verdict.
- :func:`compare_paired_items` (accuracy with per-item scores): exact McNemar test on the
  discordant items and the change in points; identical items are "pass".

``alpha`` is the per-comparison level: the session divides its family-wise level by the number
of gated comparisons (Bonferroni), see :mod:`pytest_slm.compare.gate`;
the ladder of checks before a rule is reached is :mod:`pytest_slm.compare.judge`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from pytest_slm.results import Verdict

ALPHA = 0.01
POWER = 0.80  # the detectable change is the one found with this probability
#: a "pass" says "worse by less than tau" with this one-sided confidence, per comparison
PASS_CONFIDENCE = 0.95
MIN_SESSIONS = 3
#: the t reference never has more degrees of freedom than this, however many sessions and pooled
#: metrics stand behind the spread: session-to-session changes are heavier-tailed than a normal
#: law (measured on this project's 2-core VM by scripts/tail_check.py, 188 deviations of median
#: latencies and throughput from their median in the first three recorded A/A sets, in robust sd
#: of 1.4826 x MAD: 6.9 % beyond 3 where a normal law puts 0.27 % and normal sessions of these
#: counts, 6 to 11 a figure, 3.3 %, reaching 6.9 % in 3.4 % of simulated sets; a t fit gives
#: 2.3 df; the fourth set had none beyond 3). Replayed on those sets (scripts/gate_proof.py), a
#: pooled spread with all its degrees of freedom raised false alarms to 10-16 % of sessions at
#: K = 9; capped here (and the prior weighing no more than the metric's own sessions) they stay
#: at or below 4.5 % on those sets and a fourth recorded after this choice
MAX_DF = 8


@dataclass(frozen=True)
class Comparison:
    """The verdict on one metric and the numbers behind it.

    ``ratio`` is current ÷ baseline (for accuracy: the change in points, current − baseline);
    ``ci_low``/``ci_high`` bound it; ``mde`` is the smallest change this comparison could
    detect, on the same scale as ``tau``; ``baseline_value`` is the figure the ratio is taken
    against (for the session rule: the geometric mean of the saved sessions).
    """

    metric: str
    verdict: Verdict  # pass, regressed, improved or inconclusive
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
    alpha: float | None = None

    @property
    def points(self) -> bool:
        return self.rule in ("mcnemar", "exact-points")

    def message(self, baseline_file: str | None = None) -> str:
        if self.points:
            shown = f"change {100 * self.ratio:+.2f} points [{100 * self.ci_low:+.2f}, {100 * self.ci_high:+.2f}]"
            tau = f"{100 * self.tau:.2g} points"
        else:
            shown = f"ratio {self.ratio:.4f} [{self.ci_low:.4f}, {self.ci_high:.4f}]"
            tau = f"{100 * self.tau:.3g} %"
        p = "n/a" if self.p_value is None else f"{self.p_value:.3g}"
        alpha = "" if self.alpha is None else f" (alpha {self.alpha:.3g})"
        text = (
            f"{self.metric} {self.verdict}: baseline {self.baseline_value:.6g}, current {self.current_value:.6g}, "
            f"{shown} (95 % CI), p = {p}{alpha}, tau = {tau}, rule {self.rule}, n = {self.n_baseline}/{self.n_current}"
        )
        if self.mde is not None:
            text += f", detectable change {100 * self.mde:.3g}{' points' if self.points else ' %'}"
        if self.note:
            text += f"; {self.note}"
        if baseline_file:
            text += f" (baseline {baseline_file})"
        return text


def _verdict(p_worse: float, p_better: float, worse_by: float, tau: float, worse_upper: float, alpha: float) -> Verdict:
    """``worse_by``: the observed change in the bad direction (a fraction, or points);
    ``worse_upper``: its one-sided :data:`PASS_CONFIDENCE` upper bound."""
    if p_worse < alpha and worse_by > tau:
        return Verdict.REGRESSED
    if p_better < alpha and -worse_by > tau:
        return Verdict.IMPROVED
    if worse_upper < tau:
        return Verdict.PASS
    return Verdict.INCONCLUSIVE


def se_log(samples: Sequence[float]) -> float | None:
    """Standard error of the log of a session's figure, from its per-repetition values."""
    xs = [x for x in samples if x > 0]
    if len(xs) < 2:
        return None
    logs = np.log(np.asarray(xs, dtype=float))
    return float(np.std(logs, ddof=1) / math.sqrt(len(logs)))


@dataclass(frozen=True)
class SpreadPrior:
    """What the other metrics of a pool say about a metric's between-session variance: a prior
    variance (of log figures) worth ``df`` degrees of freedom, fitted on ``metrics`` metrics."""

    variance: float
    df: float
    metrics: int


def fit_spread_prior(variances: Sequence[float], dfs: Sequence[float]) -> SpreadPrior | None:
    """The prior of a pool of between-session variances (each with its degrees of freedom).

    Smyth's method of moments on log variances (limma's ``fitFDist`` without a trend): the spread of
    the log variances beyond what their own degrees of freedom explain says how much the true
    variances differ, hence how many degrees of freedom the prior is worth (``df`` small: the
    metrics spread differently, little is borrowed; large: they spread alike). ``df`` is capped at
    the pool's total degrees of freedom: the prior cannot know more than all the sessions it was
    fitted on (the metrics of one session move together, so even that is generous; the replay of
    recorded sessions in ``scripts/gate_proof.py`` is the check). None below 3 usable metrics."""
    from scipy import optimize, special

    pairs = [(float(v), float(d)) for v, d in zip(variances, dfs, strict=True) if v > 0 and d > 0]
    if len(pairs) < 3:
        return None
    s2 = np.array([v for v, _ in pairs])
    d = np.array([d for _, d in pairs])
    e = np.log(s2) - special.digamma(d / 2) + np.log(d / 2)
    e_mean = float(np.mean(e))
    excess = float(np.var(e, ddof=1) - np.mean(special.polygamma(1, d / 2)))
    cap = float(np.sum(d))
    if excess > float(special.polygamma(1, cap / 2)):  # trigamma falls: the solution lies below the cap
        df0 = 2 * optimize.brentq(lambda x: float(special.polygamma(1, x)) - excess, 1e-8, cap / 2)
    else:  # no more spread than sampling explains, or too little to matter: the variances look equal
        df0 = cap
    variance = math.exp(e_mean + float(special.digamma(df0 / 2)) - math.log(df0 / 2))
    return SpreadPrior(variance, df0, len(pairs))


def compare_sessions(
    metric: str,
    history: Sequence[float],
    history_se: Sequence[float | None],
    current: float,
    current_se: float | None,
    *,
    higher_is_better: bool,
    tau: float = 0.05,
    alpha: float = ALPHA,
    min_sessions: int = MIN_SESSIONS,
    prior: SpreadPrior | None = None,
    earlier: Sequence[float] = (),
) -> Comparison:
    """The current session's figure against saved sessions' figures (oldest first); ``prior``:
    what the metric's pool says about its between-session variance (:func:`fit_spread_prior`).

    ``earlier``: the same metric from earlier sessions of the *same* code and workload (a
    confirmation run, ``--slm-confirm``): the current side becomes the geometric mean of the m
    sessions, and the prediction spread ``between * sqrt(1/m + 1/K)`` instead of ``sqrt(1 + 1/K)``."""
    values = [float(v) for v in history]
    mine = [*(float(v) for v in earlier), float(current)]
    if not values or any(v <= 0 for v in (*values, *mine)):
        raise ValueError(f"{metric}: the session rule works on logs and needs positive figures")
    logs = np.log(values)
    k = len(values)
    m = len(mine)
    x_c = float(np.mean(np.log(mine)))
    current = math.exp(x_c)
    se_c = current_se or 0.0
    se_h = [s for s in history_se if s is not None]
    within = math.sqrt(se_c**2 + (float(np.mean(np.square(se_h))) if se_h else 0.0))
    decisive = k >= min_sessions  # enough saved sessions to tell a change from drift
    if k >= 2 and decisive:
        mu, sd, note, dist = _between_sessions(logs, within, m, prior)
        rule = "sessions-t"
    else:
        mu = float(logs[-1])  # the latest saved session
        sd = within
        rule = "within-session"
        note = (
            f"the baseline holds {k} session(s); the gate needs {min_sessions} to tell a change from "
            f"this machine's drift between sessions (save more with --slm-save-baseline)"
            if not decisive
            else f"{k} saved session: within-session noise only (--slm-min-sessions {min_sessions})"
        )
        dist = stats.norm()
    base = math.exp(mu)
    ratio = current / base
    if sd == 0:  # no noise anywhere: the change is exact
        p_up = 0.0 if x_c > mu else 1.0
        p_down = 0.0 if x_c < mu else 1.0
        lo = hi = ratio
        mde: float | None = 0.0
        margin = 0.0
    else:
        t = (x_c - mu) / sd
        p_up, p_down = float(dist.sf(t)), float(dist.cdf(t))
        half = float(dist.ppf(0.975)) * sd
        lo, hi = math.exp(x_c - mu - half), math.exp(x_c - mu + half)
        mde = math.expm1((float(dist.ppf(1 - alpha)) + float(dist.ppf(POWER))) * sd)
        margin = float(dist.ppf(PASS_CONFIDENCE)) * sd
    p_worse, p_better = (p_down, p_up) if higher_is_better else (p_up, p_down)
    worse_by = (1 - ratio) if higher_is_better else (ratio - 1)
    worse_upper = -math.expm1(x_c - mu - margin) if higher_is_better else math.expm1(x_c - mu + margin)
    verdict = _verdict(p_worse, p_better, worse_by, tau, worse_upper, alpha)
    if not decisive and verdict in (Verdict.REGRESSED, Verdict.IMPROVED):
        note = f"a {100 * (ratio - 1):+.1f} % change beyond this session's own noise, but {note}"
        verdict = Verdict.INCONCLUSIVE
    elif not decisive and verdict == Verdict.PASS:  # within one session's noise says little about the next session
        note = f"within this session's own noise, but {note}"
        verdict = Verdict.INCONCLUSIVE
    return Comparison(
        metric, verdict, rule, base, current, ratio, lo, hi, min(p_worse, p_better), tau, mde, k, m, note, alpha
    )


def _between_sessions(logs: Any, within: float, m: int, prior: SpreadPrior | None) -> tuple[float, float, str, Any]:
    """The session rule's reference: the saved sessions' mean log figure, the prediction spread of a
    mean of ``m`` current sessions (the between-session sd, moderated by the pool's ``prior`` and
    floored by the ``within``-session standard error), the note saying so, and the t distribution."""
    k = len(logs)
    mu = float(np.mean(logs))
    own = float(np.var(logs, ddof=1))
    df: float = k - 1
    note = f"{k} saved sessions; between-session sd {100 * math.sqrt(own):.2g} % (log)"
    if prior is not None:  # moderated: shrunk towards the pool's prior, which counts at most as much as its own
        weight = min(prior.df, df)
        own = (weight * prior.variance + df * own) / (weight + df)
        df += weight
        note += (
            f", moderated to {100 * math.sqrt(own):.2g} % with the spread of {prior.metrics} metrics "
            f"({100 * math.sqrt(prior.variance):.2g} %, {weight:.3g} df)"
        )
    df = min(df, MAX_DF)
    between = math.sqrt(own)
    sd = math.sqrt(max(between, within) ** 2 * (1 / m + 1 / k))
    if m > 1:
        note += f"; current: geometric mean of {m} sessions of this code (this one and {m - 1} earlier)"
    return mu, sd, note, stats.t(df)


def compare_exact(
    metric: str, baseline: float, current: float, *, higher_is_better: bool, tau: float = 0.05, points: bool = False
) -> Comparison:
    """A deterministic figure (no noise to test against): any difference is a real change. Equal
    passes; a change beyond ``tau`` gets its direction's verdict; a smaller one passes and is
    named in the note. ``points``: the change is current − baseline (an accuracy without
    per-item scores, ``tau`` in points) instead of the ratio."""
    if points:
        change = current - baseline
        worse_by = -change if higher_is_better else change
        shown = f"{100 * change:+.2f} points"
    else:
        if baseline == current:
            change = 1.0
        elif baseline == 0:
            change = math.inf if current > 0 else -math.inf
        else:
            change = current / baseline
        worse_by = (1 - change) if higher_is_better else (change - 1)
        shown = f"{100 * (change - 1):+.3g} %"
    verdict = Verdict.REGRESSED if worse_by > tau else Verdict.IMPROVED if -worse_by > tau else Verdict.PASS
    note = (
        "identical"
        if baseline == current
        else f"changed by {shown}" + (" (within tau)" if verdict == Verdict.PASS else "")
    )
    rule = "exact-points" if points else "exact"
    return Comparison(metric, verdict, rule, baseline, current, change, change, change, None, tau, 0.0, 1, 1, note)


def compare_paired_items(
    metric: str, baseline: Sequence[float], current: Sequence[float], *, tau_points: float = 0.01, alpha: float = ALPHA
) -> Comparison:
    """Per-item correctness (0/1) on the same items: exact McNemar test and the change in points."""
    if len(baseline) != len(current):
        raise ValueError(
            f"{metric}: paired items need the same items; baseline has {len(baseline)}, current {len(current)}"
        )
    b, c = np.asarray(baseline, dtype=float), np.asarray(current, dtype=float)
    if b.size == 0 or not (np.isin(b, (0.0, 1.0)).all() and np.isin(c, (0.0, 1.0)).all()):
        raise ValueError(f"{metric}: paired items must be scored 0 or 1")
    n = b.size
    lost = int(np.sum((b == 1) & (c == 0)))
    gained = int(np.sum((b == 0) & (c == 1)))
    diff = (gained - lost) / n  # current − baseline, as a fraction (0.01 = one point)
    note = f"{lost} items lost, {gained} gained"
    if lost + gained == 0:  # the same answers item for item: nothing changed
        return Comparison(metric, Verdict.PASS, "mcnemar", float(b.mean()), float(c.mean()), 0.0, 0.0, 0.0, 1.0,
                          tau_points, 0.0, n, n, note + " (identical items)", alpha)  # fmt: skip
    bad_p = float(stats.binomtest(lost, lost + gained, 0.5, alternative="greater").pvalue)
    good_p = float(stats.binomtest(gained, lost + gained, 0.5, alternative="greater").pvalue)
    d = c - b
    se = float(np.std(d, ddof=1) / math.sqrt(n)) if n > 1 else math.inf
    z = float(stats.norm.ppf(0.975))
    mde = (float(stats.norm.ppf(1 - alpha)) + float(stats.norm.ppf(POWER))) * max(se, 1 / n) if n > 1 else None
    worse_upper = -diff + float(stats.norm.ppf(PASS_CONFIDENCE)) * max(se, 1 / n)
    verdict = _verdict(bad_p, good_p, -diff, tau_points, worse_upper, alpha)
    return Comparison(
        metric, verdict, "mcnemar", float(b.mean()), float(c.mean()), diff, diff - z * se, diff + z * se,
        min(bad_p, good_p), tau_points, mde, n, n, note, alpha,
    )  # fmt: skip
