"""``results.json`` and ``results.md``: pure functions of the collected records, written atomically."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pytest_slm import atomic, naming
from pytest_slm.report import timing
from pytest_slm.report.verdicts import evidence_lines, run_verdict
from pytest_slm.results import SCHEMA, Verdict, fmt, stood_tests


def results_document(
    environment: Mapping[str, Any],
    records: Sequence[Mapping[str, Any]],
    skipped: Sequence[Mapping[str, Any]],
    tests: Mapping[str, Mapping[str, Any]] | None = None,
    unmeasured: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """The results file: the environment, every record, the skips with their reasons, every
    collected test with pytest's outcome for it (``tests``: a killed run leaves "not run"), the
    figures the baseline holds that this run did not measure, and the run's one verdict."""
    doc = {"schema": SCHEMA, "environment": dict(environment), "records": list(records), "skipped": list(skipped)}
    if tests is not None:
        doc["tests"] = {k: dict(v) for k, v in tests.items()}
        doc["unmeasured"] = list(unmeasured)
        doc["verdict"] = run_verdict(records, tests, unmeasured)
    return doc


def markdown(
    environment: Mapping[str, Any],
    records: Sequence[Mapping[str, Any]],
    skipped: Sequence[Mapping[str, Any]],
    unmeasured: Sequence[Mapping[str, Any]] = (),
) -> str:
    """The compact table (one row per model × precision), then one detail table per model × precision,
    the baseline comparisons and the skipped tests with their reasons."""
    lines = [
        *_head(environment, records, unmeasured),
        *_detail_tables(records),
        *_comparisons(records),
        *_invalid(records),
        *_skipped(skipped),
    ]
    return "\n".join(lines)


def _head(
    environment: Mapping[str, Any], records: Sequence[Mapping[str, Any]], unmeasured: Sequence[Mapping[str, Any]]
) -> list[str]:
    """The device and profile, the compact table, and what the gate could not tell."""
    from pytest_slm.report.terminal import compact_markdown

    profile = environment.get("run_profile", {})
    hw = environment.get("hardware", {})
    device = hw.get("gpu_name") or hw.get("cpu_model", "?")
    lines = [
        "# pytest-slm results",
        "",
        f"Device: {device}; engine versions: "
        + ", ".join(f"{k} {v}" for k, v in environment.get("versions", {}).items() if k in ("vllm", "torch")),
        f"Profile: {profile.get('profile', '?')} (warmup {profile.get('num_warmup')}, runs {profile.get('num_runs')}, "
        f"batch {profile.get('batch_size')}, {profile.get('max_new_tokens')} new tokens)",
        "",
        "## Summary",
        "",
        compact_markdown(records),
        "",
    ]
    evidence = evidence_lines(records, unmeasured)
    if evidence:
        lines += ["## What the gate could not tell", "", *(f"- {line}" for line in evidence), ""]
    return lines


def _detail_tables(records: Sequence[Mapping[str, Any]]) -> list[str]:
    """One table of every figure per model × precision."""
    from tabulate import tabulate

    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for r in records:
        groups.setdefault((str(r.get("model")), str(r.get("precision"))), []).append(r)
    lines: list[str] = []
    for (model, precision), rows in groups.items():
        lines.append(f"## {model} · {precision}" if model != "None" else "## Without an engine")
        lines.append("")
        table = [
            [
                r["test"].split("::")[-1],
                r["metric"],
                fmt(r["value"]),
                r["unit"],
                "↑" if r["higher_is_better"] else "↓",
                r.get("threshold") or "",
                r["outcome"],
            ]
            for r in rows
        ]
        lines.append(
            tabulate(
                table,
                headers=["test", "metric", "value", "unit", "better", "limit", "outcome"],
                tablefmt="github",
                disable_numparse=True,
            )
        )
        lines.append("")
    return lines


def _comparisons(records: Sequence[Mapping[str, Any]]) -> list[str]:
    """The figures compared with a baseline, with their change, interval, p and verdict."""
    from tabulate import tabulate

    compared = [
        r for r in records if (r.get("baseline") or {}).get("verdict") not in (None, Verdict.SKIPPED, Verdict.INVALID)
    ]
    if not compared:
        return []
    table = tabulate(
        [_comparison_row(r) for r in compared],
        headers=["cell", "metric", "baseline", "current", "Δ", "95 % CI", "p", "verdict"],
        tablefmt="github",
        disable_numparse=True,
    )
    return ["## Against the baseline", "", table, ""]


def _invalid(records: Sequence[Mapping[str, Any]]) -> list[str]:
    """The invalid measurements, a test a line, with why."""
    from tabulate import tabulate

    invalid: dict[str, str] = {}
    stood = stood_tests(records)
    for r in records:
        if r.get("outcome") == "invalid":
            stands = " (a confirmation: the earlier run's verdicts stand)" if r["test"] in stood else ""
            invalid.setdefault(r["test"], "; ".join(r.get("invalid_reasons") or []) + stands)
    if not invalid:
        return []
    return [
        "## Invalid measurements",
        "",
        "Recorded, but not trustworthy: never compared with a baseline, never saved as one.",
        "",
        tabulate(list(invalid.items()), headers=["test", "why"], tablefmt="github"),
        "",
    ]


def _skipped(skipped: Sequence[Mapping[str, Any]]) -> list[str]:
    from tabulate import tabulate

    if not skipped:
        return []
    table = tabulate([[s["test"], s["reason"]] for s in skipped], headers=["test", "reason"], tablefmt="github")
    return ["## Skipped", "", table, ""]


def _comparison_row(r: Mapping[str, Any]) -> list[str]:
    b = r["baseline"]
    if b.get("verdict") == Verdict.ERROR or b.get("ratio") is None:
        return [
            f"{r.get('model')}-{r.get('precision')}",
            r["metric"],
            "",
            fmt(r["value"]),
            "",
            "",
            "",
            f"{b.get('verdict')}: {b.get('note', '')}"[:80],
        ]
    points = b.get("rule") == "mcnemar"
    delta = f"{100 * b['ratio']:+.2f} pt" if points else f"{100 * (b['ratio'] - 1):+.1f} %"
    lo, hi = b.get("ci_low"), b.get("ci_high")
    if lo is None or hi is None:
        ci = ""
    elif points:
        ci = f"[{100 * lo:+.2f}, {100 * hi:+.2f}] pt"
    else:
        ci = f"[{100 * (lo - 1):+.1f}, {100 * (hi - 1):+.1f}] %"
    p = "" if b.get("p_value") is None else f"{b['p_value']:.2g}"
    mark = {
        Verdict.REGRESSED: "❌ regressed",
        Verdict.IMPROVED: "✅ improved",
        Verdict.PASS: "pass",
        Verdict.INCONCLUSIVE: "⚠ inconclusive",
        Verdict.INCOMPARABLE: "≠ incomparable",
    }
    return [
        f"{r.get('model')}-{r.get('precision')}",
        r["metric"],
        fmt(b["baseline_value"]),
        fmt(r["value"]),
        delta,
        ci,
        p,
        mark.get(b["verdict"], b["verdict"]),
    ]


def github_action_benchmark(records: Sequence[Mapping[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """github-action-benchmark input, one list per direction (its tool names ``customSmallerIsBetter``
    and ``customBiggerIsBetter``)."""
    out: dict[str, list[dict[str, Any]]] = {"customSmallerIsBetter": [], "customBiggerIsBetter": []}
    for r in records:
        name = f"{r.get('model')}-{r.get('precision')} {r['test'].split('::')[-1]} {r['metric']}"
        entry: dict[str, Any] = {"name": name, "unit": r["unit"], "value": r["value"]}
        if r.get("stderr") is not None:
            entry["range"] = f"± {r['stderr']:.4g}"
        out["customBiggerIsBetter" if r["higher_is_better"] else "customSmallerIsBetter"].append(entry)
    return out


def bencher_bmf(records: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """Bencher Metric Format: benchmark name -> measure slug -> value (with bounds from stderr)."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for r in records:
        bench = f"{r.get('model')}-{r.get('precision')}::{r['test'].split('::')[-1]}"
        measure = naming.slug(r["metric"], keep="-")  # Bencher measure slugs: a-z, 0-9 and -
        value: dict[str, float] = {"value": r["value"]}
        if r.get("stderr") is not None:
            value["lower_value"] = r["value"] - r["stderr"]
            value["upper_value"] = r["value"] + r["stderr"]
        out.setdefault(bench, {})[measure] = value
    return out


def write(
    output: Path,
    environment: Mapping[str, Any],
    records: Sequence[Mapping[str, Any]],
    skipped: Sequence[Mapping[str, Any]],
    tests: Mapping[str, Mapping[str, Any]] | None = None,
    unmeasured: Sequence[Mapping[str, Any]] = (),
) -> str:
    """Write both files; return the markdown (for the terminal and the CI step summary)."""
    atomic.write_json(output / "results.json", results_document(environment, records, skipped, tests, unmeasured))
    md = markdown(environment, records, skipped, unmeasured)
    cost = timing.markdown(tests or {})
    atomic.write_text(output / "results.md", md + ("\n" + cost if cost else ""))
    gab = github_action_benchmark(records)
    for tool, entries in gab.items():
        atomic.write_json(output / f"github-action-benchmark-{tool}.json", entries)
    atomic.write_json(output / "bencher.json", bencher_bmf(records))
    return md
