"""The gate's lines in the terminal summary: verdict counts, the family, invalid measurements and
what ``--slm-save-baseline`` wrote. Pure functions of the collected records. Pytest-free."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pytest_slm.record import ERRORED
from pytest_slm.results import GATE_VERDICTS, NO_EVIDENCE, Verdict, stood_tests, verdict_counts

#: what a figure that passed without evidence is called, by kind (``without_evidence``'s keys)
WITHOUT_EVIDENCE = {
    "inconclusive": "inconclusive",
    "incomparable": "incomparable (another workload)",
    "skipped": "comparison skipped (another machine's baseline)",
    "no baseline": "no baseline",
    "not measured": "in the baseline but not measured",
    "newly skipped": "in the baseline but skipped",
}


def without_evidence(
    records: Sequence[Mapping[str, Any]], unmeasured: Sequence[Mapping[str, Any]] = ()
) -> Counter[str]:
    """Gated figures that passed (or did not fail) without evidence of no regression, by kind
    (:data:`WITHOUT_EVIDENCE`): inconclusive, incomparable, comparison skipped, no baseline (a gated
    figure with no comparison where the gate compared), and the baseline's figures this run did not
    measure (``unmeasured``: the test did not record them, or skipped)."""
    out: Counter[str] = Counter()
    for r in records:
        if not r.get("gated", True) or r.get("outcome") == "invalid":
            continue
        row = r.get("baseline")
        if row is None:
            if r.get("model") and r.get("compared", True):
                out["no baseline"] += 1
        elif row.get("verdict") in NO_EVIDENCE:
            out[row["verdict"]] += 1
    for u in unmeasured:
        out["newly skipped" if u.get("why") == "skipped" else "not measured"] += 1
    return out


def young_baseline(records: Sequence[Mapping[str, Any]]) -> tuple[int, int] | None:
    """(sessions saved, sessions needed) where session-rule figures were compared with a baseline too
    young to call a timing regressed (the fewest saved among them), else None."""
    young = [
        (row["n_baseline"], row["min_sessions"])
        for r in records
        if (row := r.get("baseline") or {}).get("rule") == "within-session"
        and isinstance(row.get("n_baseline"), int)
        and isinstance(row.get("min_sessions"), int)
        and row["n_baseline"] < row["min_sessions"]
    ]
    return min(young) if young else None


def evidence_lines(records: Sequence[Mapping[str, Any]], unmeasured: Sequence[Mapping[str, Any]] = ()) -> list[str]:
    """What a green run does and does not say: the passes as per-figure claims, the figures that
    passed without evidence, and a baseline too young to gate timings."""
    lines: list[str] = []
    counts = verdict_counts(records)
    if counts["pass"]:
        lines.append(
            f"pass: {counts['pass']} figure(s), each a per-figure claim at 95 % confidence that it is worse by less "
            "than its tolerance"
        )
    missing = without_evidence(records, unmeasured)
    if missing:
        shown = ", ".join(f"{missing[k]} {name}" for k, name in WITHOUT_EVIDENCE.items() if missing[k])
        lines.append(f"without evidence: {shown}: none of these is evidence of no regression (--slm-strict fails them)")
    young = young_baseline(records)
    if young is not None:
        saved, needed = young
        lines.append(
            f"timings cannot be called regressed until {needed} sessions are saved: {saved} saved "
            "(their figures read inconclusive, never pass; save more with --slm-save-baseline)"
        )
    return lines


def false_alarm_bound(records: Sequence[Mapping[str, Any]]) -> tuple[int, float]:
    """(comparisons, bound): the gated comparisons behind these records (a merge of shards and their
    confirmations: the verdicts the pull request acted on) and the sum of their per-comparison
    levels, which bounds the chance that an unchanged pull request gets any false red (Bonferroni)."""
    alphas = [
        float(row["alpha"])
        for r in records
        if r.get("gated", True)
        and isinstance((row := r.get("baseline") or {}).get("alpha"), (int, float))
        and row.get("verdict") not in (None, Verdict.INVALID, Verdict.SKIPPED, Verdict.INCOMPARABLE, Verdict.ERROR)
    ]
    return len(alphas), sum(alphas)


def run_verdict(
    records: Sequence[Mapping[str, Any]],
    tests: Mapping[str, Mapping[str, Any]],
    unmeasured: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """The run's one machine-readable verdict for ``results.json``: ``status`` is the worst of
    "error" (a test erred, crashed or was never reported), "regressed", "failed" (a threshold or
    another failure), "invalid" and "pass"; with the gate's counts, the tests' outcomes and the
    figures that passed without evidence."""
    outcomes = Counter(str(t.get("outcome")) for t in tests.values())
    counts = verdict_counts(records)
    failed = {name for name, t in tests.items() if t.get("outcome") == "failed"}
    stood = stood_tests(records)
    invalid = {r.get("test") for r in records if r.get("outcome") == "invalid" and r.get("test") not in stood}
    regressed = {r.get("test") for r in records if (r.get("baseline") or {}).get("verdict") == Verdict.REGRESSED}
    if any(outcomes[o] for o in ERRORED):
        status = "error"
    elif regressed & failed:
        status = "regressed"
    elif failed - invalid:
        status = "failed"
    elif invalid:
        status = "invalid"
    else:
        status = "pass"
    return {
        "status": status,
        "gate": dict(counts),
        "tests": dict(outcomes),
        "without_evidence": dict(without_evidence(records, unmeasured)),
    }


def gate_lines(
    records: Sequence[Mapping[str, Any]],
    alpha_family: float,
    written: Mapping[Path, int] | None = None,
    not_written: Sequence[tuple[str, str]] = (),
    max_items: int = 8,
    unmeasured: Sequence[Mapping[str, Any]] = (),
    shards: int = 1,
) -> list[str]:
    """At most a dozen lines: counts, the family-wise figure, what passed without evidence, then
    the problems by name."""
    lines: list[str] = []
    counts = verdict_counts(records)
    if counts:
        alphas = [a for r in records if isinstance(a := (r.get("baseline") or {}).get("alpha"), float) and a > 0]
        family = round(alpha_family / min(alphas)) if alphas else 0
        shown = ", ".join(f"{counts[v]} {v}" for v in GATE_VERDICTS if counts[v])
        lines.append(f"gate: {shown}")
        if family:
            where = f"across the {shards} shards of this run" if shards > 1 else "in this session"
            lines.append(
                f"family: {family} gated comparison(s), each at alpha {alpha_family:g}/{family} = "
                f"{alpha_family / family:.2g} (Bonferroni): at most {alpha_family:g} chance of any false alarm "
                f"{where}"
            )
    lines += evidence_lines(records, unmeasured)
    invalid = [r for r in records if r.get("outcome") == "invalid"]
    stood = stood_tests(invalid)
    seen: set[str] = set()
    for r in invalid:
        if r["test"] in seen or len(seen) >= max_items:
            continue
        seen.add(r["test"])
        why = "; ".join(r.get("invalid_reasons") or [])
        if r["test"] in stood:
            lines.append(f"invalid, the earlier run's verdicts stand: {r['test']}: {why}")
        else:
            lines.append(f"invalid: {r['test']}: {why}")
    for verdict in (Verdict.REGRESSED, Verdict.IMPROVED, Verdict.INCONCLUSIVE, Verdict.INCOMPARABLE):
        rows = [r for r in records if (r.get("baseline") or {}).get("verdict") == verdict]
        for r in rows[:max_items]:
            note = r["baseline"].get("note") or ""
            ratio = r["baseline"].get("ratio")
            fig = f" ×{ratio:.3f}" if isinstance(ratio, float) and r["baseline"].get("rule") != "mcnemar" else ""
            lines.append(f"{verdict}: {r['test'].split('::')[-1]} {r['metric']}{fig} {note}".rstrip()[:200])
        if len(rows) > max_items:
            lines.append(f"{verdict}: … and {len(rows) - max_items} more (results.md has all)")
    if written is not None:
        for path, n in written.items():
            lines.append(f"baseline saved: {n} figure(s) to {path}")
        reasons = Counter(reason for _, reason in not_written)
        for reason, n in reasons.most_common():
            lines.append(f"baseline not saved: {n} figure(s): {reason}")
    return lines
