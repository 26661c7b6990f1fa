"""``pytest-slm diff A B``: two results side by side, per metric the ratio B ÷ A and the gate's verdict
of B against A: the gate's own ladder (:func:`pytest_slm.compare.judge.judge`: invalid, not gated, a
changed unit, another workload, a machine that moved, then the decision rule) with the gate's
family (:func:`pytest_slm.compare.policy.family`) and the baseline file's spread; nothing re-derived
here. Results files as A are judged as the baseline that saving them would have written.

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

from pytest_slm import results
from pytest_slm.results import RESULTS_NAME, Verdict, metric_of, record_key


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


def is_baseline_dir(path: Path) -> bool:
    """``<fingerprint>/<model>/<precision>.json`` files and no results.json anywhere below."""
    return path.is_dir() and any(path.glob("*/*/*.json")) and not any(path.rglob(RESULTS_NAME))


def results_side(paths: Path | Sequence[Path]) -> Side:
    """The records of one or more results files, each a session of the same code."""
    files, errors = results.find([paths] if isinstance(paths, Path) else paths)
    if errors:
        raise DiffError(str(errors[0]))
    entries: dict[tuple[str, str, str], Mapping[str, Any]] = {}
    sessions: dict[tuple[str, str, str], list[Mapping[str, Any]]] = {}
    environment: Mapping[str, Any] = {}
    commits: list[str] = []
    for file in files:
        try:
            doc = results.read(file)
        except results.ResultsFileError as exc:
            raise DiffError(str(exc)) from None
        environment = doc.environment
        commits.append(str(environment.get("git_commit") or "unknown")[:12])
        mine: dict[tuple[str, str, str], Mapping[str, Any]] = {}
        for record in doc.records:
            mine.setdefault((str(record.get("model")), str(record.get("precision")), record_key(record)), record)
        for key, r in mine.items():
            if r.get("outcome") != "invalid":
                sessions.setdefault(key, []).append(r)
                entries[key] = r
            else:
                entries.setdefault(key, r)  # invalid stands only where no session measured validly
    label = str(files[0]) if len(files) == 1 else f"{len(files)} sessions: {', '.join(map(str, files))}"
    if len(set(commits)) > 1:  # sessions of one side should be one code; say so when they are not
        label += f" (of {len(set(commits))} commits: {', '.join(dict.fromkeys(commits))})"
    return Side(label, entries, environment, sessions)


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
    if len(values) == 1:  # one session: its figure as it is (exp(log(x)) need not give x back)
        return values[0]
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values and min(values) > 0 else values[-1]


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


def _references(reference: Side) -> dict[tuple[str, str, str], Mapping[str, Any]]:
    """A's entries as the gate reads a baseline: a baseline directory's as they are; results files' as
    the entries saving their valid sessions one after the other would have written (an invalid
    figure measured in no valid session stays as it is: its verdict comes from B's side)."""
    from pytest_slm.compare.judge import history_entry

    out: dict[tuple[str, str, str], Mapping[str, Any]] = {}
    for key, entry in reference.entries.items():
        sessions = reference.sessions.get(key)
        out[key] = {**history_entry(sessions), "metric": entry["metric"]} if sessions else entry
    return out


def _family(reference: Mapping[tuple[str, str, str], Any], current: Side) -> int:
    """The gate's family: A's gated entries of the tests B ran, per model × precision (a baseline file)."""
    from pytest_slm.compare import policy

    ran: dict[tuple[str, str], set[str]] = {}
    for model, precision, bkey in current.entries:
        ran.setdefault((model, precision), set()).add(bkey.rpartition("::")[0])
    return sum(
        policy.family([bkey for m, p, bkey in reference if (m, p) == cell], tests) for cell, tests in ran.items()
    )


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

    Each figure on both sides goes through the gate's ladder (:func:`pytest_slm.compare.judge.judge`):
    B's invalid measurement is "invalid", a diagnostic "not gated", a changed unit an "error", a changed
    workload "incomparable", a machine that moved "invalid"; else the gate's rule decides, at
    ``alpha_family / m`` for the m gated entries of A that B's tests meet (Bonferroni), with A's
    spread per model × precision (a baseline file's) and B's sessions pooled."""
    from pytest_slm.compare.judge import Level, baseline_spread, judge
    from pytest_slm.compare.rules import MIN_SESSIONS

    references = _references(reference)
    alpha = alpha_family / max(1, _family(references, current))
    level = Level(alpha, tau, tau_accuracy, MIN_SESSIONS if min_sessions is None else min_sessions)
    spreads = {
        cell: baseline_spread({bkey: e for (m, p, bkey), e in references.items() if (m, p) == cell})
        for cell in {(m, p) for m, p, _ in references}
    }
    rows = []
    for key in sorted(set(reference.entries) | set(current.entries)):
        row = _row(key, reference, current)
        rows.append(row)
        a, b = references.get(key), current.entries.get(key)
        if a is None or b is None:
            continue
        b_sessions = [float(r["value"]) for r in current.sessions.get(key, ())]
        found = judge(
            metric_of(b),
            a,
            level,
            invalid_reasons=(b.get("invalid_reasons") or ["invalid"]) if b.get("outcome") == "invalid" else (),
            workload=b.get("workload") if isinstance(b.get("workload"), Mapping) else {},
            spread=spreads[key[:2]],
            earlier=b_sessions[:-1],  # B's other sessions, pooled (session rule only)
        )
        assert found is not None  # an entry on both sides is always judged
        row.update(verdict=found.verdict, note=found.row.get("note") or "")
        c = found.comparison
        if c is not None:
            row.update(
                gate_statistic=_finite(c.ratio),
                p_value=c.p_value,
                ci_low=_finite(c.ci_low),
                ci_high=_finite(c.ci_high),
                rule=c.rule,
                alpha=alpha,
            )
    return rows


def _row(key: tuple[str, str, str], reference: Side, current: Side) -> dict[str, Any]:
    """The figures of one metric on each side (a side of several sessions shows their geometric
    mean, the figure its rule compares), without a verdict yet."""
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
        "a": None if a is None else _geometric_mean(a_sessions) if a_sessions else float(a["value"]),
        "b": None if b is None else _geometric_mean(b_sessions) if b_sessions else float(b["value"]),
        "sessions_a": len(a_sessions) or (None if a is None else 1),
        "sessions_b": len(b_sessions) or (None if b is None else 1),
        "ratio": None,
        "gate_statistic": None,
        "verdict": Verdict.ONLY_IN_A if b is None else Verdict.ONLY_IN_B if a is None else None,
        "p_value": None,
        "ci_low": None,
        "ci_high": None,
        "rule": None,
        "alpha": None,
        "note": "",
    }
    if a is not None and b is not None:
        row["ratio"] = row["b"] / row["a"] if row["a"] else None
    return row
