"""``pytest-slm diff A B``: two results side by side, per metric the ratio B ÷ A and the gate's verdict
of B against A (the gate's own rule: ``pytest_slm.compare.gate.compare_metric``; nothing re-derived here).

A (the reference) is a results.json, a directory holding one, or a baseline directory
(``<dir>/<fingerprint>/<model>/<precision>.json``, the files ``--slm-save-baseline`` writes); B is a
results.json or a directory holding one. Given a baseline directory as B, the two are swapped: a
baseline directory is always the reference.

Either side may hold several sessions (``diff A1 A2 A3 --vs B1 B2``; a directory without a
``results.json`` of its own stands for every one below it): the session is the unit of evidence, as
in the gate. A's sessions are its history (the between-session spread, as saved baseline sessions
are) and B's are pooled as a confirmation pools them (``compare_sessions(earlier=...)``): A/B of two
branches with a few sessions each, judged by the gate's own rule. Invalid measurements are left
out of a side's sessions.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_slm.analysis.merge import RESULTS_NAME, ResultsFileError, find_results, read_document
from pytest_slm.analysis.tables import test_function, variant_of


class DiffError(Exception):
    """An input diff cannot use; the message names it."""


@dataclass
class Side:
    """One side of a diff: entries keyed by (model, precision, baseline key)."""

    label: str
    entries: dict[tuple[str, str, str], Mapping[str, Any]]
    environment: Mapping[str, Any] = field(default_factory=dict)
    #: per key, the valid records of every session of this side, oldest first (results files only)
    sessions: dict[tuple[str, str, str], list[Mapping[str, Any]]] = field(default_factory=dict)


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
    """``<fingerprint>/<model>/<precision>.json`` files and no results.json anywhere below."""
    return path.is_dir() and any(path.glob("*/*/*.json")) and not any(path.rglob(RESULTS_NAME))


def results_side(paths: Path | Sequence[Path]) -> Side:
    """The records of one or more results files, each a session of the same code."""
    files, errors = find_results([paths] if isinstance(paths, Path) else paths)
    if errors:
        raise DiffError(str(errors[0]))
    entries: dict[tuple[str, str, str], Mapping[str, Any]] = {}
    sessions: dict[tuple[str, str, str], list[Mapping[str, Any]]] = {}
    environment: Mapping[str, Any] = {}
    commits: list[str] = []
    for file in files:
        try:
            doc, _ = read_document(file)
        except ResultsFileError as exc:
            raise DiffError(str(exc)) from None
        environment = doc["environment"]
        commits.append(str(environment.get("git_commit") or "unknown")[:12])
        mine: dict[tuple[str, str, str], Mapping[str, Any]] = {}
        for r in doc["records"]:
            mine.setdefault((str(r.get("model")), str(r.get("precision")), record_key(r)), r)
        for key, r in mine.items():
            if r.get("outcome") != "invalid":
                sessions.setdefault(key, []).append(r)
                entries[key] = r
            else:
                entries.setdefault(key, r)  # invalid stands only where no session measured validly
    label = str(files[0]) if len(files) == 1 else f"{len(files)} sessions: {', '.join(map(str, files))}"
    if len(set(commits)) > 1:  # sessions of one side should be one code; say so when they are not
        label += f" (of {len(set(commits))} commits: {', '.join(dict.fromkeys(commits))})"
    return Side(label, entries, environment, sessions if len(files) > 1 else {})


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


def load_sides(
    a: Path | Sequence[Path], b: Path | Sequence[Path], fingerprint: str | None = None
) -> tuple[Side, Side, bool]:
    """(reference, current, swapped): a baseline directory is always the reference. Each side is a
    path or several (sessions); a baseline directory stands alone on its side."""
    a_paths = [a] if isinstance(a, Path) else list(a)
    b_paths = [b] if isinstance(b, Path) else list(b)
    swapped = False
    if any(is_baseline_dir(p) for p in b_paths) and not any(is_baseline_dir(p) for p in a_paths):
        a_paths, b_paths, swapped = b_paths, a_paths, True
    if any(is_baseline_dir(p) for p in b_paths):
        raise DiffError(f"{b_paths[0]}: both inputs are baseline directories; give a results file as one of them")
    current = results_side(b_paths)
    if any(is_baseline_dir(p) for p in a_paths):
        if len(a_paths) > 1:
            raise DiffError(f"{a_paths[0]}: a baseline directory holds its own sessions; give it alone as A")
        return baseline_side(a_paths[0], current, fingerprint), current, swapped
    return results_side(a_paths), current, swapped


def _geometric_mean(values: Sequence[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values and min(values) > 0 else values[-1]


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
    from pytest_slm.compare.gate import compare_metric, incomparable, metric_se_log
    from pytest_slm.compare.rules import MIN_SESSIONS

    keys = sorted(set(reference.entries) | set(current.entries))
    both = [k for k in keys if k in reference.entries and k in current.entries]
    family = sum(1 for k in both if policy.is_gated(str(current.entries[k]["metric"])))
    alpha = alpha_family / max(1, family)
    rows = []
    for key in keys:
        model, precision, bkey = key
        a, b = reference.entries.get(key), current.entries.get(key)
        a_sessions = [float(r["value"]) for r in reference.sessions.get(key, ())]
        b_sessions = [float(r["value"]) for r in current.sessions.get(key, ())]
        test, _, metric = bkey.rpartition("::")
        row: dict[str, Any] = {
            "model": model,
            "precision": precision,
            "test": test,
            "metric": metric,
            "unit": (b or a or {}).get("unit"),
            # a side of several sessions shows their geometric mean, the figure its rule compares
            "a": None if a is None else _geometric_mean(a_sessions) if a_sessions else float(a["value"]),
            "b": None if b is None else _geometric_mean(b_sessions) if b_sessions else float(b["value"]),
            "sessions_a": len(a_sessions) or (None if a is None else 1),
            "sessions_b": len(b_sessions) or (None if b is None else 1),
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
            if len(a_sessions) > 1:  # A's sessions are its history, as a baseline's saved sessions are
                history = [
                    {"value": float(r["value"]), "se_log": metric_se_log(_metric(r))} for r in reference.sessions[key]
                ]
                a = {**a, "sessions": history}
            try:
                c = compare_metric(
                    _metric(b),
                    a,
                    tau=tau,
                    tau_accuracy=tau_accuracy,
                    alpha=alpha,
                    min_sessions=MIN_SESSIONS if min_sessions is None else min_sessions,
                    earlier=b_sessions[:-1],  # B's other sessions, pooled (session rule only)
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
