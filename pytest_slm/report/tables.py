"""Tables built from records with pandas: the compact headline table, per-record statistics, and
the quantization impact of each precision against the same model's bf16.

Records are the rows of ``results.json`` (read tolerantly: a missing key is None). pandas is
imported inside the functions, so importing this module stays light.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pytest_slm.results import (
    COLUMNS,
    GATE_VERDICTS,
    column_values,
    fmt,
    test_function,
    variant_of,
    verdict_counts,
    workload_of,
)

if TYPE_CHECKING:
    import pandas as pd

REFERENCE_PRECISION = "bf16"
#: lm-eval metric names in the order one of them is taken as a task's headline figure
MAIN_METRICS = ("acc", "exact_match", "acc_norm", "f1", "em", "mc2", "bleu", "word_perplexity", "perplexity")
#: lm-eval filters in the order one is preferred for the headline figure
MAIN_FILTERS = ("none", "strict-match", "flexible-extract")
Z95 = 1.959963984540054

#: compact-table columns: (column, metric names tried in order, scale, markdown header)
LATENCY_COLUMNS = (
    ("ttft_p50_ms", ("ttft_p50_s",), 1e3, "TTFT p50 ms"),
    ("tpot_p50_ms", ("tpot_p50_s",), 1e3, "TPOT p50 ms"),
    ("output_tokens_per_s", ("output_tokens_per_s",), 1.0, "out tok/s"),
)
#: the bench tests (function, variant) a headline metric is taken from, in order of preference; a suite
#: without them falls back to the lowest-concurrency record. Several tests record the same metric name
#: (the serving sweep records output tokens/s at every load level), so the column names its source.
HEADLINE_SOURCES: dict[str, tuple[tuple[str, str], ...]] = {
    "ttft_p50_s": (("test_ttft", "single"),),
    "tpot_p50_s": (("test_tpot", "single"),),
    "output_tokens_per_s": (("test_offline_throughput", ""),),
}
#: what the compact table shows instead of a figure whose measurement was voided
INVALID_CELL = "invalid"
WEIGHTS_METRICS = ("weights_bytes", "checkpoint_bytes")
PEAK_METRICS = ("cuda_peak_allocated_bytes", "peak_rss_bytes")
ENERGY_METRICS = ("j_per_output_token",)


def _concurrency(record: Mapping[str, Any]) -> float:
    workload = workload_of(record)
    value = workload.get("concurrency") if isinstance(workload, Mapping) else None
    return float(value) if isinstance(value, (int, float)) else math.nan


def _max_new_tokens(record: Mapping[str, Any]) -> float:
    workload = workload_of(record)
    value = workload.get("max_new_tokens") if isinstance(workload, Mapping) else None
    return float(value) if isinstance(value, (int, float)) else math.nan


def stderr_of(record: Mapping[str, Any]) -> float:
    """The record's stderr; else the standard error of its per-repetition samples (≥ 2); else NaN."""
    se = record.get("stderr")
    if isinstance(se, (int, float)) and math.isfinite(se):
        return float(se)
    samples = [float(x) for x in record.get("samples") or ()]
    if len(samples) >= 2:
        mean = sum(samples) / len(samples)
        var = sum((x - mean) ** 2 for x in samples) / (len(samples) - 1)
        return math.sqrt(var / len(samples))
    return math.nan


#: the frame's columns after the record's own (:data:`pytest_slm.results.COLUMNS`): what tables group on
DERIVED_COLUMNS = (
    "fingerprint",
    "function",
    "variant",
    "se",
    "samples",
    "stood",
    "gated",
    "task",
    "task_metric",
    "task_filter",
    "concurrency",
    "max_new_tokens",
    "workload",
    "source",
)


def records_frame(records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per record: its :data:`~pytest_slm.results.COLUMNS`, then :data:`DERIVED_COLUMNS`."""
    import pandas as pd

    rows = []
    for r in records:
        info: Mapping[str, Any] = r["info"] if isinstance(r.get("info"), Mapping) else {}
        baseline: Mapping[str, Any] = r["baseline"] if isinstance(r.get("baseline"), Mapping) else {}
        workload = workload_of(r)
        rows.append(
            {
                **column_values(r),
                "model": str(r.get("model")),
                "precision": str(r.get("precision")),
                "value": float(r["value"]),
                "higher_is_better": bool(r.get("higher_is_better")),
                "fingerprint": r.get("fingerprint"),
                "function": test_function(r),
                "variant": variant_of(r),
                "se": stderr_of(r),
                "samples": [float(x) for x in r.get("samples") or ()],
                "stood": bool(baseline.get("stood")),  # an invalid confirmation kept the earlier verdict
                "gated": bool(r.get("gated", True)),
                "task": info.get("task") if "metric" in info else None,
                "task_metric": info.get("metric") if "task" in info else None,
                "task_filter": info.get("filter") if "task" in info else None,
                "concurrency": _concurrency(r),
                "max_new_tokens": _max_new_tokens(r),
                "workload": None if workload is None else json.dumps(workload, sort_keys=True, default=str),
                "source": r.get("source"),
            }
        )
    return pd.DataFrame(rows, columns=[*COLUMNS, *DERIVED_COLUMNS])


def main_task_metrics(df: pd.DataFrame) -> dict[str, str]:
    """task -> the metric name shown as its headline figure (see :data:`MAIN_METRICS`)."""
    acc = df[df["task"].notna() & df["task_metric"].notna()]
    out: dict[str, str] = {}
    for task, rows in acc.groupby("task", sort=False):

        def rank(row: Any) -> tuple[int, int, str]:
            m = MAIN_METRICS.index(row.task_metric) if row.task_metric in MAIN_METRICS else len(MAIN_METRICS)
            f = MAIN_FILTERS.index(row.task_filter) if row.task_filter in MAIN_FILTERS else len(MAIN_FILTERS)
            return (m, f, row.metric)

        out[str(task)] = min(rows.itertuples(), key=rank).metric
    return out


def cell_columns(df: pd.DataFrame) -> list[str]:
    """("fingerprint",) when several machines are merged, then model and precision."""
    several = df["fingerprint"].dropna().nunique() > 1
    return ["fingerprint", "model", "precision"] if several else ["model", "precision"]


def _ordered_cells(df: pd.DataFrame, by: list[str]) -> list[tuple[Any, ...]]:
    """Cells in order of first appearance, the reference precision first within each model."""
    cells = list(dict.fromkeys(tuple(row) for row in df[by].itertuples(index=False)))
    models = list(dict.fromkeys(c[:-1] for c in cells))
    return [c for m in models for c in sorted((c for c in cells if c[:-1] == m), key=lambda c: c[-1] != "bf16")]


def from_headline_source(rows: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The rows of ``metric`` from its first headline source test present (``HEADLINE_SOURCES``), else
    every row of ``metric``."""
    found = rows[rows["metric"] == metric]
    if not HEADLINE_SOURCES.get(metric) or found.empty:
        return found
    functions = (
        found["function"] if "function" in found.columns else found["test"].map(lambda t: test_function({"test": t}))
    )
    for function, variant in HEADLINE_SOURCES[metric]:
        hits = found[(functions == function) & (found["variant"] == variant)]
        if not hits.empty:
            return hits
    return found


def pick_record(rows: pd.DataFrame, metrics: Sequence[str]) -> pd.Series | None:
    """The record of the first metric present: from its headline source test when the run has it (an
    invalid one is not replaced by another test's figure, which would measure something else); valid
    ones first, lowest concurrency first."""
    for name in metrics:
        found = from_headline_source(rows, name)
        if found.empty:
            continue
        ranks = [
            (outcome == "invalid", math.inf if math.isnan(c) else c, i)
            for i, (outcome, c) in enumerate(zip(found["outcome"], found["concurrency"], strict=True))
        ]
        return found.iloc[min(ranks)[2]]
    return None


def cell_figure(rows: pd.DataFrame, metrics: Sequence[str], scale: float = 1.0) -> tuple[float, bool]:
    """The picked record's value times ``scale``, and whether it was invalid. An invalid measurement is
    never a headline figure: its value is NaN, as when none was recorded, and the flag says which."""
    row = pick_record(rows, metrics)
    if row is None:
        return math.nan, False
    if row["outcome"] == "invalid":
        return math.nan, True
    return float(row["value"]) * scale, False


def cell_value(rows: pd.DataFrame, metrics: Sequence[str], scale: float = 1.0) -> float:
    """:func:`cell_figure`'s value only."""
    return cell_figure(rows, metrics, scale)[0]


def _verdicts(rows: pd.DataFrame) -> str:
    """The gate's verdict counts (an invalid measurement counts as "invalid"), in the gate's order."""
    records = [
        {"baseline": {"verdict": v if isinstance(v, str) else None, "stood": bool(s)}, "outcome": o, "gated": g}
        for v, o, s, g in zip(rows["verdict"], rows["outcome"], rows["stood"], rows["gated"], strict=True)
    ]
    counts = verdict_counts(records)
    parts = [f"{v} {counts[v]}" for v in GATE_VERDICTS if counts[v]]
    parts += [f"{v} {n}" for v, n in counts.items() if v not in GATE_VERDICTS]
    return ", ".join(parts) if parts else "no baseline"


@dataclass
class CompactTable:
    """The headline table (numbers, NaN where not measured) and the notes that explain its columns."""

    frame: pd.DataFrame
    tasks: dict[str, str]
    notes: list[str] = field(default_factory=list)
    has_energy: bool = False
    #: task -> whether its headline metric is better higher
    higher_is_better: dict[str, bool] = field(default_factory=dict)

    def display(self) -> pd.DataFrame:
        """The same table with units in the headers and figures rounded for reading."""
        import pandas as pd

        f = self.frame
        out = pd.DataFrame({c: f[c] for c in f.columns if c in ("fingerprint", "model", "precision")})
        invalid = [str(bad).split(", ") for bad in (f["invalid"] if "invalid" in f.columns else [""] * len(f))]

        def shown(col: str) -> list[str]:
            return [INVALID_CELL if col in bad else fmt(v) for v, bad in zip(f[col], invalid, strict=True)]

        for col, _, _, header in LATENCY_COLUMNS:
            out[header] = shown(col)
        out["weights / peak GB"] = [
            f"{fmt(w / 1e9)} / {fmt(p / 1e9)}" for w, p in zip(f["weights_bytes"], f["peak_bytes"], strict=True)
        ]
        if self.has_energy:
            out["J/token"] = shown("j_per_token")
        for task in self.tasks:
            out[task] = shown(f"task:{task}")
        out["retention vs bf16"] = [
            "ref" if p == REFERENCE_PRECISION else fmt(r) for p, r in zip(f["precision"], f["retention"], strict=True)
        ]
        out["gate verdicts"] = f["gate"]
        return out

    def markdown(self) -> str:
        if self.frame.empty:
            return "No model × precision recorded a metric."
        return str(self.display().to_markdown(index=False, tablefmt="github", disable_numparse=True))


def retention(value: float, reference: float, higher_is_better: bool) -> float:
    """Quantized ÷ reference for higher-is-better figures, reference ÷ quantized otherwise (NaN on 0)."""
    if not reference or not value:
        return math.nan
    return value / reference if higher_is_better else reference / value


def compact_table(records: Sequence[Mapping[str, Any]]) -> CompactTable:
    """One row per model × precision (× machine when several are merged): TTFT/TPOT p50, output tokens/s,
    weights and peak memory, J per token, each accuracy task's headline metric, the worst retention
    against the same model's bf16 over those tasks, and the gate verdict counts."""
    import pandas as pd

    # machine-level figures (e.g. the measured memory bandwidth) belong to no model × precision cell
    df = records_frame([r for r in records if r.get("model") is not None])
    if df.empty:
        return CompactTable(pd.DataFrame(), {})
    by = cell_columns(df)
    if "fingerprint" in by:  # files from before fingerprints: one "unknown" machine, not a NaN key
        df = df.assign(fingerprint=df["fingerprint"].fillna("unknown"))
    tasks = main_task_metrics(df)
    rows = []
    wanted = {m for _, names, _, _ in LATENCY_COLUMNS for m in names}
    wanted |= {*WEIGHTS_METRICS, *PEAK_METRICS, *ENERGY_METRICS, *tasks.values()}
    # Only the columns and metrics the table shows: filtering the full frame per cell is what costs.
    slim = df.loc[df["metric"].isin(wanted), [*by, "function", "variant", "metric", "value", "outcome", "concurrency"]]
    groups = {k if isinstance(k, tuple) else (k,): g for k, g in slim.groupby(by, sort=False, dropna=False)}
    verdicts = {
        k if isinstance(k, tuple) else (k,): g
        for k, g in df[[*by, "verdict", "outcome", "stood", "gated"]].groupby(by, sort=False, dropna=False)
    }
    for cell in _ordered_cells(df, by):
        g = groups.get(cell, slim.iloc[0:0])
        row: dict[str, Any] = dict(zip(by, cell, strict=True))
        shown = [(col, metrics, scale) for col, metrics, scale, _ in LATENCY_COLUMNS]
        shown += [("j_per_token", ENERGY_METRICS, 1.0)] + [(f"task:{t}", (m,), 1.0) for t, m in tasks.items()]
        voided = []
        for col, metrics, scale in shown:
            row[col], bad = cell_figure(g, metrics, scale)
            voided += [col] if bad else []
        row["weights_bytes"] = cell_value(g, WEIGHTS_METRICS)
        row["peak_bytes"] = cell_value(g, PEAK_METRICS)
        row["retention"] = math.nan
        row["gate"] = _verdicts(verdicts[cell])
        row["invalid"] = ", ".join(voided)
        rows.append(row)
    # Retention: the worst headline-task ratio against the same model's (and machine's) bf16.
    keys = by[:-1]
    reference = {tuple(r[k] for k in keys): r for r in rows if r["precision"] == REFERENCE_PRECISION}
    hib = {t: bool(df.loc[df["metric"] == m, "higher_is_better"].iloc[0]) for t, m in tasks.items()}
    for r in rows:
        ref = reference.get(tuple(r[k] for k in keys))
        ratios = [
            retention(r[f"task:{t}"], ref[f"task:{t}"], hib[t])
            for t in tasks
            if ref is not None and not math.isnan(r[f"task:{t}"]) and not math.isnan(ref[f"task:{t}"])
        ]
        ratios = [x for x in ratios if not math.isnan(x)]
        r["retention"] = min(ratios) if ratios else math.nan
    frame = pd.DataFrame(rows)
    notes = []
    if tasks:
        described = []
        for t, m in tasks.items():
            arrow = "↑" if hib[t] else "↓"
            described.append(f"{t} = {m.removeprefix(t + '.')} {arrow}")
        notes.append("Accuracy columns: " + "; ".join(described) + ". Retention: the worst of them against bf16.")
    notes.append(
        "TTFT/TPOT: the single-stream latency tests; out tok/s: offline batch throughput (a suite without those "
        "tests: the lowest-concurrency workload). Weights: loaded weights (CUDA) or checkpoint size on disk; "
        "peak: CUDA peak allocated or peak RSS (CPU, includes the KV cache)."
    )
    if (frame["invalid"] != "").any():
        notes.append(
            f"{INVALID_CELL}: the measurement the figure comes from was voided (the gate names why; its value "
            "stays in results.json); no other test's figure stands in for it."
        )
    energy = bool(frame["j_per_token"].notna().any() or frame["invalid"].str.contains("j_per_token").any())
    return CompactTable(frame, tasks, notes, energy, hib)


def results_table(compact: CompactTable) -> pd.DataFrame:
    """The compact table with raw numbers and unit-carrying column names (results_table.csv/.tex/.md)."""
    f = compact.frame.copy()
    if f.empty:
        return f
    at = list(f.columns).index("output_tokens_per_s") + 1
    f.insert(at, "weights_gb", f.pop("weights_bytes") / 1e9)
    f.insert(at + 1, "peak_gb", f.pop("peak_bytes") / 1e9)
    if not compact.has_energy:
        f = f.drop(columns=["j_per_token"])
    names = {f"task:{t}": m for t, m in compact.tasks.items()}
    f["invalid"] = [", ".join(names.get(c, c) for c in bad.split(", ")) if bad else "" for bad in f["invalid"]]
    f = f.rename(columns=names)
    f = f.rename(columns={"retention": "retention_vs_bf16", "gate": "gate_verdicts", "invalid": "invalid_figures"})
    return f


def summary_statistics(records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Per recorded figure: its value, stderr and n, and the distribution of its per-repetition (or
    per-item) samples: count, mean, std, min, median, max and coefficient of variation."""
    df = records_frame(records)
    ident = [*cell_columns(df), "test", "metric", "unit", "higher_is_better", "value", "stderr", "n"]
    if df.empty:
        import pandas as pd

        return pd.DataFrame(columns=[*ident, "samples_count", "samples_mean", "samples_std"])
    df = df.reset_index(drop=True)
    exploded = df[["samples"]].explode("samples").astype({"samples": float})
    stats = exploded.groupby(level=0)["samples"].agg(["count", "mean", "std", "min", "median", "max"])
    stats.columns = [f"samples_{c}" for c in stats.columns]
    out = df[ident].join(stats)
    out["samples_cv"] = out["samples_std"] / out["samples_mean"].abs()
    return out


def quantization_impact(records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Each non-bf16 precision against the same model's bf16 (same machine, test, workload and metric):
    Δ, ratio and retention (direction-aware ratio), with 95 % normal-approximation intervals where both
    records carry a stderr or per-repetition samples. Retention records (already ratios) are left out."""
    import pandas as pd

    df = records_frame(records)
    columns = [
        "fingerprint",
        "model",
        "precision",
        "test",
        "variant",
        "concurrency",
        "metric",
        "unit",
        "higher_is_better",
        "bf16_value",
        "value",
        "delta",
        "delta_ci_low",
        "delta_ci_high",
        "ratio",
        "ratio_ci_low",
        "ratio_ci_high",
        "retention",
        "retention_ci_low",
        "retention_ci_high",
        "bf16_source",
        "source",
    ]
    if df.empty:
        return pd.DataFrame(columns=columns)
    df = df[~df["metric"].str.endswith(".retention")].copy()
    df["fp_key"] = df["fingerprint"].fillna("")
    df["wl_key"] = df["workload"].fillna("")
    df["test_key"] = df["function"] + "[" + df["variant"] + "]"
    keys = ["fp_key", "model", "test_key", "metric", "wl_key"]
    ref = df[df["precision"] == REFERENCE_PRECISION].drop_duplicates(keys)
    other = df[df["precision"] != REFERENCE_PRECISION]
    pairs = other.merge(ref[[*keys, "value", "se", "source"]], on=keys, suffixes=("", "_ref"))
    if pairs.empty:
        return pd.DataFrame(columns=columns)
    q, b = pairs["value"], pairs["value_ref"]
    sq, sb = pairs["se"], pairs["se_ref"]
    out = pairs[
        ["fingerprint", "model", "precision", "test", "variant", "concurrency", "metric", "unit", "higher_is_better"]
    ].copy()
    out["bf16_value"] = b
    out["value"] = q
    out["delta"] = q - b
    half = Z95 * (sq**2 + sb**2) ** 0.5
    out["delta_ci_low"], out["delta_ci_high"] = out["delta"] - half, out["delta"] + half
    ratio = q / b.where(b != 0)
    rhalf = Z95 * ratio.abs() * ((sq / q.where(q != 0)) ** 2 + (sb / b.where(b != 0)) ** 2) ** 0.5
    out["ratio"] = ratio
    out["ratio_ci_low"], out["ratio_ci_high"] = ratio - rhalf, ratio + rhalf
    hib = out["higher_is_better"]
    inv = 1 / ratio.where(ratio != 0)
    out["retention"] = ratio.where(hib, inv)
    low_inv = 1 / out["ratio_ci_high"].where(out["ratio_ci_high"] > 0)
    high_inv = 1 / out["ratio_ci_low"].where(out["ratio_ci_low"] > 0)
    out["retention_ci_low"] = out["ratio_ci_low"].where(hib, low_inv)
    out["retention_ci_high"] = out["ratio_ci_high"].where(hib, high_inv)
    out["bf16_source"] = pairs["source_ref"]
    out["source"] = pairs["source"]
    return out[columns].reset_index(drop=True)


def pareto_front(xs: Sequence[float], ys: Sequence[float], *, maximize_x: bool, maximize_y: bool) -> list[int]:
    """Indices of the points no other point beats on both axes (ties kept), ordered by x."""
    sx = 1 if maximize_x else -1
    sy = 1 if maximize_y else -1
    pts = [
        (sx * x, sy * y, i) for i, (x, y) in enumerate(zip(xs, ys, strict=True)) if not (math.isnan(x) or math.isnan(y))
    ]
    front = [i for (x, y, i) in pts if not any(ox >= x and oy >= y and (ox > x or oy > y) for (ox, oy, _) in pts)]
    return sorted(front, key=lambda i: xs[i])


def against_reference(compact: CompactTable, impact: pd.DataFrame) -> pd.DataFrame:
    """Per non-bf16 row of the compact table: each figure as a ratio of the same model's bf16, and each
    task's headline metric as Δ with its 95 % interval (from :func:`quantization_impact`)."""
    import pandas as pd

    f = compact.frame
    if f.empty:
        return pd.DataFrame()
    by = [c for c in ("fingerprint", "model") if c in f.columns]
    ratio_cols = [
        ("ttft_p50_ms", "TTFT p50 ×"),
        ("tpot_p50_ms", "TPOT p50 ×"),
        ("output_tokens_per_s", "out tok/s ×"),
        ("weights_bytes", "weights ×"),
        ("peak_bytes", "peak ×"),
    ]
    if compact.has_energy:
        ratio_cols.append(("j_per_token", "J/token ×"))
    refs = {tuple(r[c] for c in by): r for _, r in f.iterrows() if r["precision"] == REFERENCE_PRECISION}
    rows = []
    for _, r in f.iterrows():
        ref = refs.get(tuple(r[c] for c in by))
        if r["precision"] == REFERENCE_PRECISION or ref is None:
            continue
        row: dict[str, Any] = {c: r[c] for c in by}
        row["precision"] = r["precision"]
        for col, header in ratio_cols:
            row[header] = fmt(r[col] / ref[col]) if ref[col] else "–"
        for task, metric in compact.tasks.items():
            hit = impact[
                (impact["model"] == r["model"]) & (impact["precision"] == r["precision"]) & (impact["metric"] == metric)
            ]
            if "fingerprint" in by:
                hit = hit[hit["fingerprint"] == r["fingerprint"]]
            if hit.empty:
                row[f"{task} Δ"] = "–"
                continue
            h = hit.iloc[0]
            ci = "" if math.isnan(h["delta_ci_low"]) else f" [{h['delta_ci_low']:+.3g}, {h['delta_ci_high']:+.3g}]"
            row[f"{task} Δ"] = f"{h['delta']:+.3g}{ci}"
        rows.append(row)
    return pd.DataFrame(rows)
