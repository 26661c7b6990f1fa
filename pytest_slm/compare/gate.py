"""Pick the decision rule for a metric and compare it with its baseline entry. Pytest-free."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from pytest_slm.compare import identity, policy
from pytest_slm.compare.baseline import sessions_of
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
from pytest_slm.measure.machine import Shift, machine_shift, pooled_spread
from pytest_slm.record import Metric

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


def incomparable(metric: str, stored: Mapping[str, Any], current: Mapping[str, Any]) -> dict[str, Any] | None:
    """An "incomparable" row when the stored workload differs from the current one, else None."""
    diffs = identity.differences(stored, current)
    if not diffs:
        return None
    return {"metric": metric, "verdict": "incomparable", "note": "; ".join(diffs)}


def comparison_row(c: Comparison, baseline_file: str) -> dict[str, Any]:
    row = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in asdict(c).items()}
    row["file"] = baseline_file
    return row


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
