"""Pick the decision rule for a metric and compare it with its baseline entry. Pytest-free."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, replace
from typing import Any

from pytest_slm.compare.rules import (
    Comparison,
    compare_few_runs,
    compare_paired_items,
    compare_repetitions,
)
from pytest_slm.record import Metric

DEFAULT_TAU = 0.05  # latency, throughput, energy: 5 %
DEFAULT_TAU_ACCURACY = 0.01  # accuracy: 1 point


def _is_items(samples: Any) -> bool:
    return bool(samples) and all(s in (0, 1, 0.0, 1.0) for s in samples)


def compare_metric(
    metric: Metric, entry: Mapping[str, Any], *, tau: float = DEFAULT_TAU, tau_accuracy: float = DEFAULT_TAU_ACCURACY
) -> Comparison:
    """The verdict on ``metric`` against a stored baseline ``entry`` (value, samples, unit, direction)."""
    base_samples = [float(x) for x in entry.get("samples") or ()]
    cur_samples = list(metric.samples)
    hib = metric.higher_is_better
    if "task" in metric.info and _is_items(base_samples) and _is_items(cur_samples):
        return compare_paired_items(metric.name, base_samples, cur_samples, tau_points=tau_accuracy)
    if len(base_samples) >= 2 and len(cur_samples) >= 2:
        # The rules decide on per-repetition values; show the reported figures next to their ratio
        # (e.g. a p90 next to the ratio of per-repetition medians of p90) so nothing looks re-derived.
        if metric.unit == "s":
            c = compare_repetitions(metric.name, base_samples, cur_samples, higher_is_better=hib, tau=tau)
            return replace(c, baseline_value=float(entry["value"]), current_value=metric.value)
        if all(x > 0 for x in [*base_samples, *cur_samples]):
            c = compare_few_runs(metric.name, base_samples, cur_samples, higher_is_better=hib, tau=tau)
            return replace(c, baseline_value=float(entry["value"]), current_value=metric.value)
    base = float(entry["value"])
    ratio = metric.value / base if base else float("inf")
    if metric.unit == "B":  # sizes are exact: no noise to test against
        worse_by = (1 - ratio) if hib else (ratio - 1)
        verdict = "regressed" if worse_by > tau else "improved" if -worse_by > tau else "pass"
        return Comparison(metric.name, verdict, "exact", base, metric.value, ratio, ratio, ratio, None, tau, 0.0, 1, 1)
    return Comparison(
        metric.name,
        "inconclusive",
        "none",
        base,
        metric.value,
        ratio,
        float("nan"),
        float("nan"),
        None,
        tau,
        None,
        len(base_samples),
        len(cur_samples),
        note="no per-repetition values on both sides; nothing to test noise against",
    )


def comparison_row(c: Comparison, baseline_file: str) -> dict[str, Any]:
    row = {k: (None if isinstance(v, float) and v != v else v) for k, v in asdict(c).items()}  # NaN -> null
    row["file"] = baseline_file
    return row


def baseline_entry(
    metric: Metric, saved_at: str, git_commit: str | None, versions: Mapping[str, str]
) -> dict[str, Any]:
    return {
        "value": metric.value,
        "unit": metric.unit,
        "higher_is_better": metric.higher_is_better,
        "samples": list(metric.samples),
        "n": metric.n,
        "stderr": metric.stderr,
        "saved_at": saved_at,
        "git_commit": git_commit,
        "versions": dict(versions),
    }
