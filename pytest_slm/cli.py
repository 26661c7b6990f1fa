"""The ``pytest-slm`` console script: small commands over stored results.json files.

    pytest-slm report RESULTS... --output-dir DIR [--html] [--no-plots]
    pytest-slm diff A B [--tau 0.05] [--tau-accuracy 0.01] [--alpha 0.05] [--min-sessions N] [--fingerprint FP]
                        [--csv PATH] [--fail-on-regression]
    pytest-slm trend DIR... --metric NAME [--model M] [--precision P] [--test SUBSTR] [--output-dir OUT]
    pytest-slm export RESULTS --format pytest-benchmark -o OUT.json
    pytest-slm import-benchmark BENCH.json [-o DIR]

Exit status of ``report``: 0 when every input was read (conflicting records are listed, in
conflicts.json and on stderr, and do not change the status); 1 when some input could not be used
(it is named on stderr and in executive_summary.md; the report is still written from the others);
2 when no input could be used (nothing is written). ``diff``: 0, or 1 with --fail-on-regression when
a metric regressed; 2 when an input cannot be used. ``trend``: 0; 1 when some file could not be
used (named on stderr); 2 when no file has the metric. ``export`` and ``import-benchmark``: 0, or 2 when
the input cannot be used.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

EXIT_OK = 0
EXIT_BAD_INPUT = 1
EXIT_NOTHING = 2
#: conflicts printed on stderr (all of them are in conflicts.json)
LISTED_CONFLICTS = 10


def _report(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from pytest_slm.analysis.build import build
    from pytest_slm.analysis.merge import merge
    from pytest_slm.report.verdicts import false_alarm_bound

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
        f"counted once, {len(merged.conflicts)} conflict(s), {len(merged.superseded)} superseded by a confirmation, "
        f"{len(merged.errors)} input error(s)",
        file=out,
    )
    comparisons, bound = false_alarm_bound(merged.records)
    if comparisons:
        shards = len({str(r.get("source")) for r in merged.records})
        print(
            f"gate: {comparisons} gated comparison(s) over {shards} results file(s), per-comparison levels summing to "
            f"{bound:.3g}: at most {100 * bound:.2g} % chance of any false red for an unchanged pull request "
            "(Bonferroni; a pass is a per-figure claim at 95 %)",
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


def _diff(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from collections import Counter

    from pytest_slm.analysis.diff import DiffError, diff_rows, load_sides
    from pytest_slm.results import Verdict

    if args.vs is None and len(args.a) != 2:
        print("pytest-slm diff: error: give A B, or A's sessions then --vs and B's sessions", file=err)
        return EXIT_NOTHING
    a, b = (args.a, args.vs) if args.vs is not None else ([args.a[0]], [args.a[1]])
    try:
        reference, current, swapped = load_sides(a, b, args.fingerprint)
    except DiffError as exc:
        print(f"pytest-slm diff: error: {exc}", file=err)
        return EXIT_NOTHING
    rows = diff_rows(
        reference,
        current,
        tau=args.tau,
        tau_accuracy=args.tau_accuracy,
        alpha_family=args.alpha,
        min_sessions=args.min_sessions,
    )
    if swapped:
        print("the baseline directory is the reference (A); the results file is compared against it", file=out)
    print(f"A (reference): {reference.label}\nB: {current.label}", file=out)
    print(_diff_table(rows), file=out)
    counts = Counter(r["verdict"] for r in rows)
    print("verdicts: " + ", ".join(f"{k} {n}" for k, n in counts.most_common()), file=out)
    for side in (Verdict.ONLY_IN_A, Verdict.ONLY_IN_B):
        alone = [f"{r['model']} · {r['precision']} {r['test']}::{r['metric']}" for r in rows if r["verdict"] == side]
        if alone:
            print(f"{side} ({len(alone)}): " + ", ".join(alone[:10]) + (" …" if len(alone) > 10 else ""), file=out)
    if args.csv:
        import pandas as pd

        from pytest_slm import atomic

        atomic.write_text(args.csv, pd.DataFrame(rows).to_csv(index=False))
        print(f"wrote {args.csv}", file=out)
    regressed = counts.get(Verdict.REGRESSED, 0)
    return 1 if args.fail_on_regression and regressed else EXIT_OK


def _diff_table(rows: list[dict[str, Any]]) -> str:
    """The figures on both sides of a diff, a row each, with the gate's statistic and verdict."""
    from tabulate import tabulate

    from pytest_slm.analysis.diff import gate_text
    from pytest_slm.results import fmt

    both = [r for r in rows if r["a"] is not None and r["b"] is not None]
    return str(
        tabulate(
            [
                [
                    f"{r['model']} · {r['precision']}",
                    r["test"],
                    r["metric"],
                    fmt(r["a"]),
                    fmt(r["b"]),
                    r["unit"] or "",
                    fmt(r["ratio"]),
                    f"{r['sessions_a']}/{r['sessions_b']}",
                    gate_text(r),
                    "" if r["p_value"] is None else f"{r['p_value']:.2g}",
                    r["verdict"],
                ]
                for r in both
            ],
            headers=[
                "cell",
                "test",
                "metric",
                "A",
                "B",
                "unit",
                "B/A",
                "sessions A/B",
                "gate statistic [95 % CI]",
                "p",
                "verdict",
            ],
            tablefmt="github",
            disable_numparse=True,
        )
    )


def _trend(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from pytest_slm import atomic
    from pytest_slm.analysis import trend

    found = trend.collect(args.results, args.metric, model=args.model, precision=args.precision, test=args.test)
    for e in found.errors:
        print(f"pytest-slm trend: error: {e.message}", file=err)
    if found.frame.empty:
        print(
            f"pytest-slm trend: no record of metric {args.metric!r} (with the filters given) in {found.files} file(s)",
            file=err,
        )
        return EXIT_NOTHING
    wide = trend.table(found)
    print(str(wide.to_markdown(index=False, tablefmt="github")), file=out)
    how = sorted(set(found.frame["time_source"]))
    print(f"{wide.shape[0]} run(s) ordered by {' / '.join(how)}", file=out)
    out_dir = args.output_dir or (args.results[0] if args.results[0].is_dir() else args.results[0].parent)
    csv_path = out_dir / f"trend_{args.metric}.csv"
    atomic.write_text(csv_path, found.frame.to_csv(index=False))
    print(f"wrote {csv_path}", file=out)
    for path in trend.plot(found, args.metric, out_dir):
        print(f"wrote {path}", file=out)
    return EXIT_BAD_INPUT if found.errors else EXIT_OK


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

    diff = sub.add_parser(
        "diff",
        help="two results side by side: ratio and the regression gate's verdict per metric",
        description="Compare B against A (A: the reference; a results file, a directory with one, or a baseline "
        "directory) with the regression gate's rules.",
    )
    diff.add_argument(
        "a",
        type=Path,
        nargs="+",
        help="A B: the reference (results.json, a directory with one, or a baseline directory) and the results "
        "compared against it; with --vs, every path here is a session of A",
    )
    diff.add_argument(
        "--vs",
        type=Path,
        nargs="+",
        metavar="B",
        help="B's sessions (results files or directories with results.json below), pooled as a confirmation "
        "pools them; the positional paths are then A's sessions, its between-session spread",
    )
    diff.add_argument("--tau", type=float, default=0.05, help="relative tolerance (default 0.05 = 5 %%)")
    diff.add_argument("--tau-accuracy", type=float, default=0.01, help="accuracy tolerance in points (0.01 = 1 pt)")
    diff.add_argument(
        "--alpha", type=float, default=0.05, help="family-wise false-alarm level; each of m comparisons at alpha/m"
    )
    diff.add_argument(
        "--min-sessions",
        type=int,
        default=None,
        help="saved sessions the reference needs before a timing change is called a regression (the gate's default: "
        "3); a results file is one session",
    )
    diff.add_argument("--fingerprint", help="baseline fingerprint to compare with (default: B's machine)")
    diff.add_argument("--csv", type=Path, help="also write every row (with p-values and intervals) as CSV")
    diff.add_argument("--fail-on-regression", action="store_true", help="exit 1 when any metric regressed")
    diff.set_defaults(func=_diff)

    tr = sub.add_parser(
        "trend",
        help="one metric over a series of results files (ordered by run time) as a table and a plot",
        description="One metric over a series of results files (e.g. a history of CI runs).",
    )
    tr.add_argument("results", nargs="+", type=Path, help="directories searched for results.json, or files")
    tr.add_argument("--metric", required=True, help="metric name, e.g. output_tokens_per_s")
    tr.add_argument("--model", help="only this model")
    tr.add_argument("--precision", help="only this precision")
    tr.add_argument("--test", help="only tests whose id contains this text (e.g. single)")
    tr.add_argument("--output-dir", "-o", type=Path, help="where trend_<metric>.csv/.png/.svg go (default: DIR)")
    tr.set_defaults(func=_trend)
    from pytest_slm.interop import pytest_benchmark

    pytest_benchmark.register(sub)  # export, import-benchmark
    return p


def main(argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Entry point of the ``pytest-slm`` console script; returns the exit status."""
    args = parser().parse_args(argv)
    return int(args.func(args, out or sys.stdout, err or sys.stderr))


if __name__ == "__main__":
    raise SystemExit(main())
