"""The ``pytest-slm`` console script: small commands over stored results.json files.

    pytest-slm report RESULTS... --output-dir DIR [--html] [--no-plots]
    pytest-slm diff A B [--tau 0.05] [--tau-accuracy 0.01] [--fail-on-regression]
    pytest-slm trend DIR --metric NAME [--model M] [--precision P] [--test SUBSTR] [--output-dir OUT]

Exit status of ``report``: 0 when every input was read (conflicting records are listed, in
conflicts.json and on stderr, and do not change the status); 1 when some input could not be used
(it is named on stderr and in executive_summary.md; the report is still written from the others);
2 when no input could be used (nothing is written).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

EXIT_OK = 0
EXIT_BAD_INPUT = 1
EXIT_NOTHING = 2
#: conflicts printed on stderr (all of them are in conflicts.json)
LISTED_CONFLICTS = 10


def _report(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from pytest_slm.analysis.merge import merge
    from pytest_slm.analysis.report import build

    merged = merge(args.results)
    for e in merged.errors:
        print(f"pytest-slm report: error: {e.message}", file=err)
    if not merged.sources:
        print("pytest-slm report: no usable results file among the inputs; nothing written", file=err)
        return EXIT_NOTHING
    for c in merged.conflicts[:LISTED_CONFLICTS]:
        print(f"pytest-slm report: conflict: {c.describe()}", file=err)
    built = build(merged, args.output_dir, html=args.html, plots=not args.no_plots)
    if len(merged.conflicts) > LISTED_CONFLICTS:
        print(
            f"pytest-slm report: {len(merged.conflicts)} conflicts in all: {args.output_dir / 'conflicts.json'}",
            file=err,
        )
    print(
        f"merged {len(merged.sources)} file(s): {len(merged.records)} records, {merged.duplicates} duplicate(s) "
        f"counted once, {len(merged.conflicts)} conflict(s), {len(merged.errors)} input error(s)",
        file=out,
    )
    for path in built.files:
        print(f"wrote {path}", file=out)
    pngs = [p for p in built.plots if p.suffix == ".png"]
    if pngs:
        print(f"wrote {len(pngs)} plot(s), PNG and SVG, under {args.output_dir / 'plots'}", file=out)
    for name, why in built.omitted.items():
        print(f"plot left out: {name} — {why}", file=out)
    return EXIT_BAD_INPUT if merged.errors else EXIT_OK


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pytest-slm", description="Reports over pytest-slm results.json files.")
    sub = p.add_subparsers(dest="command", required=True)
    rep = sub.add_parser(
        "report",
        help="merge results files and write tables, an executive summary, plots and (--html) a leaderboard page",
        description="Merge results.json files (or directories searched for them) and write the report.",
    )
    rep.add_argument("results", nargs="+", type=Path, help="results.json files or directories containing them")
    rep.add_argument("--output-dir", "-o", type=Path, required=True, help="where the report is written")
    rep.add_argument("--html", action="store_true", help="also write leaderboard.html (one self-contained page)")
    rep.add_argument("--no-plots", action="store_true", help="skip the matplotlib plots")
    rep.set_defaults(func=_report)
    return p


def main(argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Entry point of the ``pytest-slm`` console script; returns the exit status."""
    args = parser().parse_args(argv)
    return int(args.func(args, out or sys.stdout, err or sys.stderr))


if __name__ == "__main__":
    raise SystemExit(main())
