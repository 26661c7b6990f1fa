"""``pytest-slm diff A B``: two results side by side, per metric the ratio B ÷ A and the gate's verdict
of B against A (the gate's own rule: ``pytest_slm.compare.gate.compare_metric``; nothing re-derived here).

A (the reference) is a results.json, a directory holding one, or a baseline directory
(``<dir>/<fingerprint>/<model>/<precision>.json``, the files ``--slm-save-baseline`` writes); B is a
results.json or a directory holding one. Given a baseline directory as B, the two are swapped: a
baseline directory is always the reference.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_slm.analysis.merge import RESULTS_NAME, ResultsFileError, read_document
from pytest_slm.analysis.tables import test_function, variant_of


class DiffError(Exception):
    """An input diff cannot use; the message names it."""


@dataclass
class Side:
    """One side of a diff: entries keyed by (model, precision, baseline key)."""

    label: str
    entries: dict[tuple[str, str, str], Mapping[str, Any]]
    environment: Mapping[str, Any] = field(default_factory=dict)


def record_key(record: Mapping[str, Any]) -> str:
    """The record's identity across runs and engines, as the gate keys baselines:
    ``file::function[params without the engine id]::metric``."""
    if record.get("baseline_key"):
        return str(record["baseline_key"])
    test = str(record.get("test") or "")
    variant = variant_of(record)
    name = Path(test.split("::")[0]).name
    return f"{name}::{test_function(record)}" + (f"[{variant}]" if variant else "") + f"::{record['metric']}"


def is_baseline_dir(path: Path) -> bool:
    return path.is_dir() and not (path / RESULTS_NAME).exists() and any(path.glob("*/*/*.json"))


def results_side(path: Path) -> Side:
    file = path / RESULTS_NAME if path.is_dir() else path
    if not file.exists():
        raise DiffError(
            f"{path}: no such results file" + (f" (no {RESULTS_NAME} in the directory)" if path.is_dir() else "")
        )
    try:
        doc, _ = read_document(file)
    except ResultsFileError as exc:
        raise DiffError(str(exc)) from None
    entries: dict[tuple[str, str, str], Mapping[str, Any]] = {}
    for r in doc["records"]:
        entries.setdefault((str(r.get("model")), str(r.get("precision")), record_key(r)), r)
    return Side(str(file), entries, doc["environment"])


def _engine_kind(environment: Mapping[str, Any]) -> str:
    engines = environment.get("engines") or {}
    kinds = {str(e.get("engine")) for e in engines.values() if isinstance(e, Mapping) and e.get("engine")}
    return kinds.pop() if len(kinds) == 1 else "vllm"


def baseline_side(root: Path, current: Side, fingerprint: str | None) -> Side:
    """The baseline entries for every (model, precision) of ``current``, from ``root/<fingerprint>/``."""
    from pytest_slm.compare.baseline import BaselineError, BaselineStore
    from pytest_slm.compare.baseline import fingerprint as machine_fingerprint

    available = sorted(d.name for d in root.iterdir() if d.is_dir())
    fp = fingerprint or current.environment.get("fingerprint")
    how = "--fingerprint" if fingerprint else "the results' environment"
    if not fp:
        fp = machine_fingerprint(current.environment, _engine_kind(current.environment))
        how = "computed from the results' environment"
    if fp not in available:
        if fingerprint is None and len(available) == 1:
            fp, how = available[0], "the only fingerprint in the directory"
        else:
            raise DiffError(
                f"{root}: no baselines for fingerprint {fp} ({how}); available: {', '.join(available) or 'none'} "
                "(choose one with --fingerprint)"
            )
    store = BaselineStore(root)
    entries: dict[tuple[str, str, str], Mapping[str, Any]] = {}
    for model, precision in sorted({(m, p) for m, p, _ in current.entries}):
        try:
            base = store.load(fp, model, precision)
        except BaselineError as exc:
            raise DiffError(str(exc)) from None
        if base is None:
            continue
        for key, entry in base.entries.items():
            entries[(model, precision, key)] = {**entry, "metric": key.rsplit("::", 1)[-1]}
    return Side(f"{root / fp} (fingerprint from {how})", entries)


def load_sides(a: Path, b: Path, fingerprint: str | None = None) -> tuple[Side, Side, bool]:
    """(reference, current, swapped): a baseline directory is always the reference."""
    swapped = False
    if is_baseline_dir(b) and not is_baseline_dir(a):
        a, b, swapped = b, a, True
    if is_baseline_dir(b):
        raise DiffError(f"{b}: both inputs are baseline directories; give a results file as one of them")
    current = results_side(b)
    reference = baseline_side(a, current, fingerprint) if is_baseline_dir(a) else results_side(a)
    return reference, current, swapped


def _metric(record: Mapping[str, Any]) -> Any:
    from pytest_slm.record import Metric

    return Metric(
        name=str(record["metric"]),
        value=float(record["value"]),
        unit=str(record.get("unit") or "1"),
        higher_is_better=bool(record.get("higher_is_better")),
        n=record.get("n"),
        stderr=record.get("stderr"),
        samples=tuple(float(x) for x in record.get("samples") or ()),
        info=dict(record.get("info") or {}),
    )


def _finite(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def gate_text(row: Mapping[str, Any]) -> str:
    """The gate's statistic as it decides on it: a ratio, or for accuracy (McNemar) a change in points."""
    stat = row.get("gate_statistic")
    if stat is None:
        return ""
    lo, hi = row.get("ci_low"), row.get("ci_high")
    if row.get("rule") == "mcnemar":
        ci = "" if lo is None or hi is None else f" [{100 * lo:+.2f}, {100 * hi:+.2f}]"
        return f"{100 * stat:+.2f} pt{ci}"
    ci = "" if lo is None or hi is None else f" [{lo:.3f}, {hi:.3f}]"
    return f"×{stat:.3f}{ci}"


def diff_rows(
    reference: Side,
    current: Side,
    *,
    tau: float,
    tau_accuracy: float,
    alpha_family: float = 0.05,
    min_sessions: int | None = None,
) -> list[dict[str, Any]]:
    """One row per metric on both sides (and one per metric on one side only, without a verdict).

    As the gate does: only gated metrics get a verdict ("not gated" otherwise), a changed workload is
    "incomparable", a changed unit an "error", and each of the m gated comparisons is made at
    ``alpha_family / m`` (Bonferroni), with the gate's session rule (``min_sessions``)."""
    from pytest_slm.compare import policy
    from pytest_slm.compare.gate import compare_metric, incomparable
    from pytest_slm.compare.rules import MIN_SESSIONS

    keys = sorted(set(reference.entries) | set(current.entries))
    both = [k for k in keys if k in reference.entries and k in current.entries]
    family = sum(1 for k in both if policy.is_gated(str(current.entries[k]["metric"])))
    alpha = alpha_family / max(1, family)
    rows = []
    for key in keys:
        model, precision, bkey = key
        a, b = reference.entries.get(key), current.entries.get(key)
        test, _, metric = bkey.rpartition("::")
        row: dict[str, Any] = {
            "model": model,
            "precision": precision,
            "test": test,
            "metric": metric,
            "unit": (b or a or {}).get("unit"),
            "a": None if a is None else float(a["value"]),
            "b": None if b is None else float(b["value"]),
            "ratio": None,
            "gate_statistic": None,
            "verdict": "only in A" if b is None else "only in B" if a is None else None,
            "p_value": None,
            "ci_low": None,
            "ci_high": None,
            "rule": None,
            "alpha": None,
            "note": "",
        }
        rows.append(row)
        if a is None or b is None:
            continue
        row["ratio"] = row["b"] / row["a"] if row["a"] else None
        current_workload = b.get("workload") if isinstance(b.get("workload"), Mapping) else None
        stored_workload = a.get("workload") if isinstance(a.get("workload"), Mapping) else None
        if not policy.is_gated(metric):
            row["verdict"] = "not gated"
        elif a.get("unit") not in (None, b.get("unit")):
            row.update(verdict="error", note=f"unit changed from {a.get('unit')} to {b.get('unit')}")
        elif b.get("outcome") == "invalid":
            row.update(verdict="invalid", note="; ".join(b.get("invalid_reasons") or []))
        elif (
            stored_workload is not None
            and (mismatch := incomparable(metric, stored_workload, current_workload or {})) is not None
        ):
            row.update(verdict="incomparable", note=mismatch["note"])
        else:
            try:
                c = compare_metric(
                    _metric(b),
                    a,
                    tau=tau,
                    tau_accuracy=tau_accuracy,
                    alpha=alpha,
                    min_sessions=MIN_SESSIONS if min_sessions is None else min_sessions,
                )
            except ValueError as exc:
                row.update(verdict="error", note=str(exc))
            else:
                row.update(
                    verdict=c.verdict,
                    gate_statistic=_finite(c.ratio),
                    p_value=c.p_value,
                    ci_low=_finite(c.ci_low),
                    ci_high=_finite(c.ci_high),
                    rule=c.rule,
                    alpha=alpha,
                    note=c.note or "",
                )
    return rows
