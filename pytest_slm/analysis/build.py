"""``pytest-slm report``: merged results -> tables, executive summary, plots, leaderboard page."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_slm import atomic
from pytest_slm.analysis.merge import Merged, conflicts_document
from pytest_slm.report import tables

#: how many conflicts the executive summary lists (all of them are in conflicts.json)
LISTED_CONFLICTS = 20


@dataclass
class Built:
    """What a report build wrote, and what it left out and why."""

    files: list[Path] = field(default_factory=list)
    plots: list[Path] = field(default_factory=list)
    omitted: dict[str, str] = field(default_factory=dict)  # plot name -> why it was not drawn


def _csv(df: Any, path: Path) -> Path:
    atomic.write_text(path, df.to_csv(index=False))
    return path


def _devices(merged: Merged) -> list[str]:
    out = []
    for s in merged.sources:
        hw = s.environment.get("hardware", {}) if isinstance(s.environment.get("hardware"), dict) else {}
        versions = s.environment.get("versions", {}) if isinstance(s.environment.get("versions"), dict) else {}
        device = hw.get("gpu_name") or hw.get("cpu_model") or "unknown device"
        engine = ", ".join(f"{k} {versions[k]}" for k in ("vllm", "torch") if versions.get(k))
        out.append(f"{device}" + (f" ({engine})" if engine else ""))
    return list(dict.fromkeys(out))


def executive_summary(merged: Merged, compact: tables.CompactTable, versus: Any, built: Built, output_dir: Path) -> str:
    """The page a person reads first: inputs and what merging found, the headline table, each
    precision against bf16, the Pareto-optimal cells, and the plots drawn or left out (with why)."""
    lines = ["# pytest-slm: executive summary", ""]
    lines.append(
        f"Inputs: {len(merged.sources)} results file(s), {len(merged.records)} records "
        f"({merged.duplicates} exact duplicate(s) counted once), {len(merged.conflicts)} conflicting record(s), "
        f"{len(merged.superseded)} superseded by a confirmation, {len(merged.errors)} input error(s)."
    )
    devices = _devices(merged)
    if devices:
        lines.append("Measured on: " + "; ".join(devices) + ".")
    lines.append("")
    if merged.errors:
        lines += ["## Inputs that could not be used", ""]
        lines += [f"- {e.message}" for e in merged.errors]
        lines.append("")
    if merged.conflicts:
        lines += [
            "## Conflicting records",
            "",
            "Same identity (fingerprint, workload, model, precision, test, metric), different value. The first "
            "input keeps its record in the tables; every other value is in conflicts.json.",
            "",
        ]
        lines += [f"- {c.describe()}" for c in merged.conflicts[:LISTED_CONFLICTS]]
        if len(merged.conflicts) > LISTED_CONFLICTS:
            lines.append(f"- … and {len(merged.conflicts) - LISTED_CONFLICTS} more (conflicts.json)")
        lines.append("")
    if merged.superseded:
        sessions = max(x.kept_session for x in merged.superseded)
        lines += [
            "## Confirmed by later sessions",
            "",
            f"{len(merged.superseded)} record(s) were measured again by a confirmation (`--slm-confirm`, same "
            f"commit, up to session {sessions} of a chain): the tables show the latest session's figure and its "
            "pooled verdict; the earlier records are in complete_results.json (`superseded`).",
            "",
        ]
    lines += ["## Headline", "", compact.markdown(), "", *compact.notes, ""]
    if versus is not None and not versus.empty:
        lines += [
            "## Against bf16 of the same model",
            "",
            "Ratios of the headline figures; accuracy as Δ with its 95 % interval (normal approximation from "
            "the records' stderr or per-repetition values) where the records carry one.",
            "",
            str(versus.to_markdown(index=False, tablefmt="github", disable_numparse=True)),
            "",
        ]
    elif not compact.frame.empty:
        lines += ["## Against bf16 of the same model", "", "No model has both bf16 and another precision.", ""]
    front = _pareto_lines(compact)
    if front:
        lines += ["## Pareto front: accuracy against output tokens/s", "", *front, ""]
    lines += ["## Plots", ""]
    lines += [f"- {p.relative_to(output_dir)}" for p in built.plots if p.suffix == ".png"]
    lines += [f"- left out: {name} — {why}" for name, why in built.omitted.items()]
    if not built.plots and not built.omitted:
        lines.append("- none drawn (--no-plots)")
    lines.append("")
    return "\n".join(lines)


def _pareto_lines(compact: tables.CompactTable) -> list[str]:
    f = compact.frame
    out = []
    for task in compact.tasks:
        col = f"task:{task}"
        if f.empty or f[col].isna().all() or f["output_tokens_per_s"].isna().all():
            continue
        hib = compact.higher_is_better[task]
        idx = tables.pareto_front(list(f["output_tokens_per_s"]), list(f[col]), maximize_x=True, maximize_y=hib)
        cells = [f"{f.iloc[i]['model']} · {f.iloc[i]['precision']}" for i in idx]
        out.append(f"- {task}: " + ", ".join(cells))
    return out


def build(merged: Merged, output_dir: Path, *, html: bool = False, plots: bool = True) -> Built:
    """Write every output of the report for ``merged`` under ``output_dir``."""
    built = Built()
    output_dir.mkdir(parents=True, exist_ok=True)
    doc = merged.document()
    atomic.write_text(
        output_dir / "complete_results.json", json.dumps(doc, indent=2, sort_keys=True, default=str) + "\n"
    )
    built.files.append(output_dir / "complete_results.json")
    atomic.write_json(output_dir / "conflicts.json", conflicts_document(merged.conflicts))
    built.files.append(output_dir / "conflicts.json")

    compact = tables.compact_table(merged.records)
    table = tables.results_table(compact)
    built.files.append(_csv(table, output_dir / "results_table.csv"))
    if table.empty:
        atomic.write_text(output_dir / "results_table.md", "No model × precision recorded a metric.\n")
        atomic.write_text(output_dir / "results_table.tex", "% No model × precision recorded a metric.\n")
    else:
        atomic.write_text(
            output_dir / "results_table.md",
            str(table.to_markdown(index=False, tablefmt="github")) + "\n\n" + "\n".join(compact.notes) + "\n",
        )
        atomic.write_text(
            output_dir / "results_table.tex",
            table.style.hide(axis="index").format(precision=4, na_rep="--").to_latex(hrules=True) + "\n",
        )
    built.files += [output_dir / "results_table.md", output_dir / "results_table.tex"]
    built.files.append(_csv(tables.summary_statistics(merged.records), output_dir / "summary_statistics.csv"))
    impact = tables.quantization_impact(merged.records)
    built.files.append(_csv(impact, output_dir / "quantization_impact.csv"))
    versus = tables.against_reference(compact, impact)

    if plots:
        from pytest_slm.analysis import plots as plotting

        drawn, omitted = plotting.draw_all(merged.records, compact, impact, output_dir / "plots", merged.skipped)
        built.plots += drawn
        built.omitted.update(omitted)
    if html:
        from pytest_slm.analysis import leaderboard

        built.files.append(leaderboard.write(merged, compact, output_dir / "leaderboard.html"))
    summary = executive_summary(merged, compact, versus, built, output_dir)
    atomic.write_text(output_dir / "executive_summary.md", summary)
    built.files.append(output_dir / "executive_summary.md")
    return built
