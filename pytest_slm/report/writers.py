"""``results.json`` and ``results.md``: pure functions of the collected records, written atomically."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pytest_slm import atomic

SCHEMA = "pytest-slm/1"


def results_document(
    environment: Mapping[str, Any], records: Sequence[Mapping[str, Any]], skipped: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    return {"schema": SCHEMA, "environment": dict(environment), "records": list(records), "skipped": list(skipped)}


def _fmt(value: float) -> str:
    if value == 0 or 1e-3 <= abs(value) < 1e6:
        return f"{value:.4g}"
    return f"{value:.4e}"


def markdown(
    environment: Mapping[str, Any], records: Sequence[Mapping[str, Any]], skipped: Sequence[Mapping[str, Any]]
) -> str:
    """One table per model × precision, then skipped tests with their reasons."""
    from tabulate import tabulate

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
    ]
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for r in records:
        groups.setdefault((str(r.get("model")), str(r.get("precision"))), []).append(r)
    for (model, precision), rows in groups.items():
        lines.append(f"## {model} · {precision}" if model != "None" else "## Without an engine")
        lines.append("")
        table = [
            [
                r["test"].split("::")[-1],
                r["metric"],
                _fmt(r["value"]),
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
    if skipped:
        lines.append("## Skipped")
        lines.append("")
        lines.append(
            tabulate([[s["test"], s["reason"]] for s in skipped], headers=["test", "reason"], tablefmt="github")
        )
        lines.append("")
    return "\n".join(lines)


def write(
    output: Path,
    environment: Mapping[str, Any],
    records: Sequence[Mapping[str, Any]],
    skipped: Sequence[Mapping[str, Any]],
) -> str:
    """Write both files; return the markdown (for the terminal and the CI step summary)."""
    atomic.write_json(output / "results.json", results_document(environment, records, skipped))
    md = markdown(environment, records, skipped)
    atomic.write_text(output / "results.md", md)
    return md
