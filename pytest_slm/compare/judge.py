"""The verdict ladder: one figure against its baseline entry. Pytest-free.

:func:`judge` is the one order of checks, shared by the gate (:class:`pytest_slm.compare.gate.Gate`)
and ``pytest-slm diff`` (:mod:`pytest_slm.analysis.diff`), so the two never disagree on the same
figures:

1. the test's measurement was invalid: "invalid" (never compared);
2. a diagnostic (not gated): "not gated" (the gate records no comparison);
3. no baseline entry: nothing to judge;
4. the unit changed: "error";
5. the stored workload differs: "incomparable";
6. the machine moved since the baseline's sessions (the reference kernel): "invalid", and the
   test's window decides nothing (:attr:`Judgement.void`);
7. the decision rule (:func:`compare_metric`): "pass", "regressed", "improved", "inconclusive",
   or "error" when the figures cannot be compared.

The comparisons of a session share one false-alarm level: :func:`pytest_slm.compare.policy.family`
counts them (Bonferroni).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from pytest_slm.compare import identity, policy
from pytest_slm.compare.baseline import merge_entry, sessions_of
from pytest_slm.compare.rules import (
    MIN_SESSIONS,
    Comparison,
    SpreadPrior,
    compare_exact,
    compare_paired_items,
    compare_sessions,
    fit_spread_prior,
    se_log,
)
from pytest_slm.compare.shift import Shift, machine_shift, pooled_spread
from pytest_slm.record import Metric
from pytest_slm.results import INVALID_PREFIX, ComparisonRow, Verdict, metric_of

DEFAULT_TAU = 0.05  # latency, throughput, energy, memory: 5 %
DEFAULT_TAU_ACCURACY = 0.01  # accuracy: 1 point


def _is_items(samples: Any) -> bool:
    return bool(samples) and all(s in (0, 1, 0.0, 1.0) for s in samples)


def metric_se_log(metric: Metric) -> float | None:
    """The within-session standard error of log(value): the measurement's own estimate (e.g. a
    hierarchical bootstrap for a percentile) or, failing that, from the per-repetition values."""
    given = metric.info.get("se_log")
    if isinstance(given, (int, float)) and math.isfinite(given):
        return float(given)
    return se_log(metric.samples)


@dataclass
class Spread:
    """What a whole baseline file knows about its machine's noise, beyond any one entry: the
    between-session spread of each pool of metrics (:func:`pytest_slm.compare.policy.spread_pool`)
    and the reference kernel's window-to-window spread. Fitted once per file, from stored sessions
    only (never from the session being judged)."""

    priors: dict[str, SpreadPrior] = field(default_factory=dict)
    #: the histories of ``info["machine"]`` dicts, one per entry, for :func:`pooled_spread`
    machines: list[list[Mapping[str, Any] | None]] = field(default_factory=list)
    _kernel: dict[tuple[str, str], tuple[float, float] | None] = field(default_factory=dict)

    def kernel(self, kernel: str, device: str) -> tuple[float, float] | None:
        key = (kernel, device.split(":")[0])
        if key not in self._kernel:
            self._kernel[key] = pooled_spread(self.machines, kernel, device)
        return self._kernel[key]


def _session_rule(name: str, entry: Mapping[str, Any]) -> bool:
    metric = name.rpartition("::")[2]
    samples = entry.get("samples") or ()
    return policy.is_gated(metric) and policy.rule_for(metric, has_items=_is_items(samples)) == "sessions"


def baseline_spread(entries: Mapping[str, Mapping[str, Any]]) -> Spread:
    """The :class:`Spread` of a baseline file's entries (``test key::metric`` -> entry)."""
    pools: dict[str, tuple[list[float], list[float]]] = {}
    spread = Spread()
    for name, entry in entries.items():
        history = sessions_of(entry)
        spread.machines.append([s.get("machine") for s in history])
        pool = policy.spread_pool(name.rpartition("::")[2], entry.get("unit"))
        values = [float(s["value"]) for s in history]
        if pool is None or len(values) < 2 or min(values) <= 0 or not _session_rule(name, entry):
            continue
        variances, dfs = pools.setdefault(pool, ([], []))
        variances.append(float(np.var(np.log(values), ddof=1)))
        dfs.append(len(values) - 1)
    for pool, (variances, dfs) in pools.items():
        prior = fit_spread_prior(variances, dfs)
        if prior is not None:
            spread.priors[pool] = prior
    return spread


def compare_metric(
    metric: Metric,
    entry: Mapping[str, Any],
    *,
    tau: float = DEFAULT_TAU,
    tau_accuracy: float = DEFAULT_TAU_ACCURACY,
    alpha: float = 0.01,
    min_sessions: int = MIN_SESSIONS,
    spread: Spread | None = None,
    earlier: Sequence[float] = (),
) -> Comparison:
    """The verdict on ``metric`` against a stored baseline ``entry`` (same workload assumed);
    ``spread``: the baseline file's :func:`baseline_spread` (a session-rule metric in a pool
    borrows its pool's between-session spread); ``earlier``: the metric's figures from earlier
    sessions of the same code (``--slm-confirm``; session-rule metrics only)."""
    hib = metric.higher_is_better
    base_samples = [float(x) for x in entry.get("samples") or ()]
    is_task = "task" in metric.info
    rule = policy.rule_for(metric.name, has_items=is_task and _is_items(base_samples) and _is_items(metric.samples))
    if rule == "items":
        return compare_paired_items(metric.name, base_samples, list(metric.samples), tau_points=tau_accuracy,
                                    alpha=alpha)  # fmt: skip
    if rule == "exact":  # deterministic: sizes, compression, perplexity
        return compare_exact(metric.name, float(entry["value"]), metric.value, higher_is_better=hib, tau=tau)
    if is_task:  # an accuracy figure without per-item scores: greedy decoding makes it deterministic too
        return compare_exact(metric.name, float(entry["value"]), metric.value, higher_is_better=hib,
                             tau=tau_accuracy, points=True)  # fmt: skip
    history = sessions_of(entry)
    ses = [s.get("se_log") if s.get("se_log") is not None else None for s in history]
    if ses and ses[-1] is None:  # a schema-1 entry: its samples give the latest session's noise
        ses[-1] = se_log(base_samples)
    return compare_sessions(
        metric.name,
        [float(s["value"]) for s in history],
        ses,
        metric.value,
        metric_se_log(metric),
        higher_is_better=hib,
        tau=tau,
        alpha=alpha,
        min_sessions=min_sessions,
        prior=_prior(metric, spread),
        earlier=earlier,
    )


def _prior(metric: Metric, spread: Spread | None) -> SpreadPrior | None:
    pool = policy.spread_pool(metric.name, metric.unit)
    return None if spread is None or pool is None else spread.priors.get(pool)


def machine_check(metric: Metric, entry: Mapping[str, Any], spread: Spread | None = None) -> Shift | None:
    """The machine's speed shift since the baseline's sessions, when it is too large to compare
    ``metric`` (the reference kernel of :mod:`pytest_slm.measure.machine`); None when it is not,
    or when either side carries no probe (figures that are not timings, older baselines).
    ``spread``: the baseline file's, whose kernel spread over all its windows sets the allowance."""
    current = metric.info.get("machine")
    pooled = None
    if spread is not None and isinstance(current, Mapping) and current.get("kernel"):
        pooled = spread.kernel(str(current["kernel"]), str(current.get("device", "")))
    shift = machine_shift(current, [s.get("machine") for s in sessions_of(entry)], pooled=pooled)
    return shift if shift is not None and shift.exceeded else None


def incomparable(metric: str, stored: Mapping[str, Any], current: Mapping[str, Any]) -> ComparisonRow | None:
    """An "incomparable" row when the stored workload differs from the current one, else None."""
    diffs = identity.differences(stored, current)
    if not diffs:
        return None
    return {"metric": metric, "verdict": Verdict.INCOMPARABLE, "note": "; ".join(diffs)}


def comparison_row(c: Comparison, baseline_file: str) -> ComparisonRow:
    row = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in asdict(c).items()}
    row["file"] = baseline_file
    return row  # type: ignore[return-value]


@dataclass(frozen=True)
class Level:
    """What a comparison is held to: its per-comparison level (the family's share), the tolerances
    (a fraction; accuracy in points as a fraction) and the saved sessions a timing verdict needs."""

    alpha: float
    tau: float = DEFAULT_TAU
    tau_accuracy: float = DEFAULT_TAU_ACCURACY
    min_sessions: int = MIN_SESSIONS
    #: whether an improvement fails the test too (``--slm-fail-on-improvement``)
    fail_on_improvement: bool = False


@dataclass(frozen=True)
class Judgement:
    """One figure's verdict and its row for the record; ``problem``: the failure message it gives its
    test; ``void``: the machine moved, so the test's whole window decides nothing (the reason)."""

    verdict: Verdict
    row: ComparisonRow
    problem: str | None = None
    void: str | None = None
    comparison: Comparison | None = None


def invalid_row(reasons: Sequence[str]) -> ComparisonRow:
    """The row of a figure whose test's measurement was invalid."""
    return {"verdict": Verdict.INVALID, "note": INVALID_PREFIX + "; ".join(reasons)}


def judge(
    metric: Metric,
    entry: Mapping[str, Any] | None,
    level: Level,
    *,
    invalid_reasons: Sequence[str] = (),
    workload: Mapping[str, Any] | None = None,
    spread: Spread | None = None,
    earlier: Sequence[float] = (),
    baseline_file: str = "",
) -> Judgement | None:
    """The ladder of the module docstring for ``metric`` against its baseline ``entry`` (None: there is
    none); ``invalid_reasons``: why the test's measurement is invalid (none: it is valid);
    ``workload``: the figure's identity (:mod:`pytest_slm.compare.identity`); ``spread``: the baseline
    file's (:func:`baseline_spread`); ``earlier``: figures of earlier sessions of this code to pool.
    None when there is nothing to judge (no entry)."""
    if invalid_reasons:
        return Judgement(Verdict.INVALID, invalid_row(invalid_reasons))
    if not policy.is_gated(metric.name):
        return Judgement(Verdict.NOT_GATED, {"verdict": Verdict.NOT_GATED})
    if entry is None:
        return None
    where = f" ({baseline_file})" if baseline_file else ""
    if entry.get("unit") not in (None, metric.unit):
        return Judgement(
            Verdict.ERROR,
            {"verdict": Verdict.ERROR, "note": f"unit changed from {entry.get('unit')} to {metric.unit}"},
            problem=f"{metric.name}: baseline unit {entry.get('unit')!r} != current {metric.unit!r}{where}",
        )
    stored = entry.get("workload")
    if isinstance(stored, Mapping):
        mismatch = incomparable(metric.name, stored, workload or {})
        if mismatch is not None:
            return Judgement(Verdict.INCOMPARABLE, {**mismatch, "file": baseline_file})
    shift = machine_check(metric, entry, spread)
    if shift is not None:  # the machine, not the code, moved: no verdict either way
        row: ComparisonRow = {"verdict": Verdict.INVALID, "note": shift.reason(), "machine_ratio": shift.ratio,
                              "file": baseline_file}  # fmt: skip
        return Judgement(Verdict.INVALID, row, void=shift.reason())
    try:
        c = compare_metric(
            metric,
            entry,
            tau=level.tau,
            tau_accuracy=level.tau_accuracy,
            alpha=level.alpha,
            min_sessions=level.min_sessions,
            spread=spread,
            earlier=earlier,
        )
    except ValueError as exc:
        return Judgement(
            Verdict.ERROR, {"verdict": Verdict.ERROR, "note": str(exc)}, problem=f"{metric.name}: {exc}{where}"
        )
    row = comparison_row(c, baseline_file)
    if c.rule == "within-session":  # a young baseline: the summary says how many sessions it needs
        row["min_sessions"] = level.min_sessions
    if c.n_current > 1:  # pooled (--slm-confirm): a further confirmation pools these too
        row["earlier"] = list(earlier)
    fails = c.verdict == Verdict.REGRESSED or (c.verdict == Verdict.IMPROVED and level.fail_on_improvement)
    return Judgement(c.verdict, row, problem=c.message(baseline_file or None) if fails else None, comparison=c)


def history_entry(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The baseline entry that saving these sessions' records of one figure (oldest first) would write:
    what ``pytest-slm diff`` compares with when its reference is results files, not a baseline."""
    entry: dict[str, Any] | None = None
    for r in records:
        saved = baseline_entry(metric_of(r), r.get("workload") or {}, "", None, {})
        entry = merge_entry(entry, saved, reset=False)
    if entry is None:
        raise ValueError("a history needs at least one session")
    return entry


def baseline_entry(
    metric: Metric,
    workload: Mapping[str, Any],
    saved_at: str,
    git_commit: str | None,
    versions: Mapping[str, str],
) -> dict[str, Any]:
    """One session's entry for a metric (the store appends it to the entry's session history)."""
    return {
        "value": metric.value,
        "unit": metric.unit,
        "higher_is_better": metric.higher_is_better,
        "samples": list(metric.samples),
        "se_log": metric_se_log(metric),
        "n": metric.n,
        "stderr": metric.stderr,
        "workload": dict(workload),
        "machine": metric.info.get("machine"),
        "saved_at": saved_at,
        "git_commit": git_commit,
        "versions": dict(versions),
    }
