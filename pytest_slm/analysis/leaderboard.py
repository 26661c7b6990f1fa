"""``leaderboard.html``: one self-contained static page (no CDN, no server; works from ``file://``).

The data is embedded once, as JSON in a ``<script type="application/json">`` block; the page's
vanilla JavaScript (in ``leaderboard.html`` next to this module) draws the sortable, filterable
table, the search, the accuracy-against-throughput scatter (inline SVG), the top models per task,
the side-by-side comparison of up to four rows, the CSV export and the permalinks (URL hash).
"""

from __future__ import annotations

import json
import math
from importlib import resources
from pathlib import Path
from typing import Any

from pytest_slm import atomic
from pytest_slm.analysis.merge import Merged
from pytest_slm.report import tables

PLACEHOLDER = "/*SLM_DATA*/"


def _number(value: Any) -> float | None:
    if value is None:
        return None
    v = float(value)
    return None if math.isnan(v) or math.isinf(v) else v


def page_data(merged: Merged, compact: tables.CompactTable) -> dict[str, Any]:
    """Columns (key, label, kind, direction) and one row per model × precision (raw numbers; null = not measured)."""
    f = compact.frame
    columns: list[dict[str, Any]] = []
    if "fingerprint" in f.columns:
        columns.append({"key": "machine", "label": "machine", "kind": "text", "higher_is_better": None})
    columns += [
        {"key": "model", "label": "model", "kind": "text", "higher_is_better": None},
        {"key": "precision", "label": "precision", "kind": "text", "higher_is_better": None},
        {"key": "ttft_p50_ms", "label": "TTFT p50 ms", "kind": "number", "higher_is_better": False},
        {"key": "tpot_p50_ms", "label": "TPOT p50 ms", "kind": "number", "higher_is_better": False},
        {"key": "output_tokens_per_s", "label": "out tok/s", "kind": "number", "higher_is_better": True},
        {"key": "weights_gb", "label": "weights GB", "kind": "number", "higher_is_better": False},
        {"key": "peak_gb", "label": "peak GB", "kind": "number", "higher_is_better": False},
    ]
    if compact.has_energy:
        columns.append({"key": "j_per_token", "label": "J/token", "kind": "number", "higher_is_better": False})
    tasks = []
    for task, metric in compact.tasks.items():
        key = f"task:{task}"
        hib = compact.higher_is_better[task]
        columns.append({"key": key, "label": task, "kind": "number", "higher_is_better": hib})
        tasks.append({"key": key, "task": task, "metric": metric, "higher_is_better": hib})
    columns += [
        {"key": "retention", "label": "retention vs bf16", "kind": "number", "higher_is_better": True},
        {"key": "gate", "label": "gate verdicts", "kind": "text", "higher_is_better": None},
    ]
    rows = []
    for r in f.to_dict("records") if not f.empty else []:
        row: dict[str, Any] = {
            "model": r["model"],
            "precision": r["precision"],
            "ttft_p50_ms": _number(r["ttft_p50_ms"]),
            "tpot_p50_ms": _number(r["tpot_p50_ms"]),
            "output_tokens_per_s": _number(r["output_tokens_per_s"]),
            "weights_gb": _number(r["weights_bytes"] / 1e9),
            "peak_gb": _number(r["peak_bytes"] / 1e9),
            "j_per_token": _number(r["j_per_token"]),
            "retention": _number(r["retention"]),
            "gate": r["gate"],
        }
        row.update({f"task:{t}": _number(r[f"task:{t}"]) for t in compact.tasks})
        row["id"] = f"{r['model']} · {r['precision']}"
        if "fingerprint" in r:
            row["machine"] = r["fingerprint"]
            row["id"] += f" · {r['fingerprint']}"
        rows.append(row)
    meta = (
        f"{len(rows)} model × precision rows from {len(merged.sources)} results file(s), {len(merged.records)} records"
        + (f"; {len(merged.conflicts)} conflicting record(s), see conflicts.json" if merged.conflicts else "")
    )
    return {
        "meta": meta,
        "notes": compact.notes,
        "columns": columns,
        "rows": rows,
        "tasks": tasks,
        "throughput_key": "output_tokens_per_s",
    }


def render(data: dict[str, Any]) -> str:
    """The page with ``data`` embedded; '<' is escaped so no value can close the script element."""
    template = resources.files("pytest_slm.analysis").joinpath("leaderboard.html").read_text(encoding="utf-8")
    payload = json.dumps(data, sort_keys=True, allow_nan=False).replace("<", "\\u003c")
    return template.replace(PLACEHOLDER, payload, 1)


def write(merged: Merged, compact: tables.CompactTable, path: Path) -> Path:
    atomic.write_text(path, render(page_data(merged, compact)))
    return path
