"""The summary a person reads in ten seconds: the compact table at the top of results.md, in the
terminal and in the GitHub job summary. The detail tables stay in results.md."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

#: items shown per list in the terminal; the rest is in results.md
TERMINAL_LIST_ITEMS = 4


def compact_markdown(records: Sequence[Mapping[str, Any]]) -> str:
    """The compact table (one row per model × precision) and the notes on its columns."""
    from pytest_slm.analysis.tables import compact_table

    table = compact_table(records)
    return "\n".join([table.markdown(), "", *table.notes])


def _capped(title: str, items: Sequence[str]) -> list[str]:
    if not items:
        return []
    shown = items[:TERMINAL_LIST_ITEMS]
    more = f"; first {len(shown)} listed, all in results.md" if len(items) > len(shown) else ""
    return [f"{title} ({len(items)}{more}):", *(f"  {line}" for line in shown)]


def terminal_lines(
    records: Sequence[Mapping[str, Any]], skipped: Sequence[Mapping[str, Any]], output: Path
) -> list[str]:
    """The terminal summary: the compact table, then short lists (failed tests, skip reasons) and the
    files written; at most 12 lines besides the table. The gate's own lines (verdicts, regressions,
    baselines saved) follow from ``report.gate_summary``."""
    lines = compact_markdown(records).splitlines()
    # invalid measurements are listed, with their reasons, by the gate's lines
    failed = list(dict.fromkeys(str(r.get("test")) for r in records if r.get("outcome") == "failed"))
    lines += _capped("failed tests with records", failed)
    reasons = Counter(str(s.get("reason")) for s in skipped)
    lines += _capped(
        f"skipped: {len(skipped)} tests, by reason", [f"{n} × {reason[:150]}" for reason, n in reasons.most_common()]
    )
    lines.append(f"written: {output / 'results.json'}, {output / 'results.md'} (detail tables per model × precision)")
    return lines
