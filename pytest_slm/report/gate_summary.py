"""The gate's lines in the terminal summary: verdict counts, the family, invalid measurements and
what ``--slm-save-baseline`` wrote. Pure functions of the collected records. Pytest-free."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

VERDICTS = ("pass", "regressed", "improved", "inconclusive", "incomparable", "invalid", "skipped", "error")


def stood_tests(records: Sequence[Mapping[str, Any]]) -> set[Any]:
    """The tests of a confirmation whose void window kept the earlier run's verdicts (any of their
    records carries a ``stood`` row: diagnostics of the same test carry none)."""
    return {r.get("test") for r in records if (r.get("baseline") or {}).get("stood")}


def verdict_counts(records: Sequence[Mapping[str, Any]]) -> Counter[str]:
    """Baseline verdicts of the gated records (invalid measurements count as "invalid", except in a
    confirmation whose earlier verdicts stand for its invalid window: those count as the verdict)."""
    out: Counter[str] = Counter()
    for r in records:
        if not r.get("gated", True):  # diagnostics: recorded, never judged
            continue
        row = r.get("baseline") or {}
        verdict = row.get("verdict")
        if r.get("outcome") == "invalid" and not row.get("stood"):
            verdict = "invalid"
        if verdict:
            out[verdict] += 1
    return out


def gate_lines(
    records: Sequence[Mapping[str, Any]],
    alpha_family: float,
    written: Mapping[Path, int] | None = None,
    not_written: Sequence[tuple[str, str]] = (),
    max_items: int = 8,
) -> list[str]:
    """At most a dozen lines: counts, the family-wise figure, then the problems by name."""
    lines: list[str] = []
    counts = verdict_counts(records)
    if counts:
        alphas = [a for r in records if isinstance(a := (r.get("baseline") or {}).get("alpha"), float) and a > 0]
        family = round(alpha_family / min(alphas)) if alphas else 0
        shown = ", ".join(f"{counts[v]} {v}" for v in VERDICTS if counts[v])
        lines.append(f"gate: {shown}")
        if family:
            lines.append(
                f"family: {family} gated comparison(s), each at alpha {alpha_family:g}/{family} = "
                f"{alpha_family / family:.2g} (Bonferroni): at most {alpha_family:g} chance of any false alarm "
                f"in this session"
            )
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
    for verdict in ("regressed", "improved", "inconclusive", "incomparable"):
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
