"""What the terminal shows: the report header, and the summary a person reads in ten seconds (the
compact table at the top of results.md, in the terminal and in the GitHub job summary). The detail
tables stay in results.md."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_slm.compare.confirm import EarlierRun
    from pytest_slm.settings import Settings
    from pytest_slm.shard import ShardPlan

#: items shown per list in the terminal; the rest is in results.md
TERMINAL_LIST_ITEMS = 4


def compact_markdown(records: Sequence[Mapping[str, Any]]) -> str:
    """The compact table (one row per model × precision) and the notes on its columns."""
    from pytest_slm.report.tables import compact_table

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
    baselines saved) follow from :mod:`pytest_slm.report.verdicts`."""
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


def header_lines(
    s: Settings, models: Sequence[str], plan: ShardPlan | None, earlier: EarlierRun | None, workers: int
) -> list[str]:
    """pytest's report header: what runs (models, precisions, engine, run sizes, output), this
    runner's shard, the run a confirmation confirms, and what ``-n`` workers do to CPU timings."""
    lines = [
        f"slm: models={' '.join(models)} precisions={' '.join(p.name for p in s.precisions)} "
        f"engine={s.engine} profile={s.profile} (warmup {s.num_warmup}, runs {s.num_runs}, batch {s.batch_size}, "
        f"{s.max_new_tokens} tokens) output={s.output}"
    ]
    if plan is not None:
        lines.append(f"slm: shard {plan.index}/{plan.count}: {' '.join(sorted(plan.models))}")
    if earlier is not None:
        commit = (
            earlier.git_commit or "unknown: not a git checkout, so that both runs measured the same code is unchecked"
        )
        lines.append(
            f"slm: confirming {earlier.path} (commit {commit}): {len(earlier.tests)} "
            f"test(s) to measure again, {len(earlier.settled)} settled there and left out"
        )
    if workers > 1:
        lines.append(
            f"slm: {workers} xdist workers: engines that run on the CPU share its cores, so each worker's "
            f"engine is the others' foreign load; overlapping timings are invalid above "
            f"--slm-max-foreign-load ({s.max_foreign_load:g} of the machine's cores)"
        )
    return lines
