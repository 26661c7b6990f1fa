"""Plots of merged results with matplotlib's object API on the Agg canvas (no pyplot state, no display).

Each ``plot_*`` function takes the records' DataFrame (``tables.records_frame``) and the compact
table, writes ``<name>.png`` and ``<name>.svg``, and returns their paths; where there is nothing to
draw it raises :class:`NoData` with the reason, so no plot is ever drawn blank.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_slm.report import tables

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

LATENCY_KINDS = {"ttft": "TTFT", "tpot": "TPOT", "itl": "ITL", "e2e": "end-to-end"}
PERCENTILES = ("p50", "p90", "p99")


class NoData(Exception):
    """Nothing to draw; the message says why."""


def new_figure(ncols: int = 1, nrows: int = 1, width: float = 6.4, height: float = 4.2) -> tuple[Figure, list[Axes]]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, [ax for row in axes for ax in row]


def save_figure(fig: Figure, out_dir: Path, name: str) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext in ("png", "svg"):
        path = out_dir / f"{name}.{ext}"
        tmp = out_dir / f".{name}.tmp.{ext}"
        fig.savefig(tmp, dpi=120)
        tmp.replace(path)  # atomic: a crash never leaves half a picture
        paths.append(path)
    return paths


def _label(row: Mapping[str, Any], several_machines: bool) -> str:
    label = f"{row['model']} · {row['precision']}"
    if several_machines and row.get("fingerprint"):
        label += f"\n{str(row['fingerprint'])[:28]}"
    return label


def _lowest_concurrency(df: pd.DataFrame) -> pd.DataFrame:
    """Per (cell, metric): the record of the lowest concurrency (the compact table's choice)."""
    by = ["fingerprint", "model", "precision", "metric"]
    ordered = df.assign(_fp=df["fingerprint"].fillna("")).sort_values("concurrency", na_position="last", kind="stable")
    return ordered.drop_duplicates(["_fp", *by[1:]]).drop(columns="_fp")


def _bars(
    ax: Axes, groups: Sequence[str], series: Mapping[str, Sequence[float]], errors: Mapping[str, Any] | None = None
) -> None:
    """Horizontal grouped bars: one group per entry of ``groups`` (top to bottom), one bar per series.
    Cells go on the y axis so 20 model × precision labels stay readable."""
    n = max(len(series), 1)
    height = 0.8 / n
    for i, (name, values) in enumerate(series.items()):
        ys = [g + (i - (n - 1) / 2) * height for g in range(len(groups))]
        err = None if errors is None else errors.get(name)
        ax.barh(ys, values, height, label=name, xerr=err, capsize=2 if err is not None else 0)
    ax.set_yticks(range(len(groups)), groups)
    ax.set_ylim(len(groups) - 0.5, -0.5)  # first cell on top


def _height(groups: int, series: int = 1) -> float:
    """Figure height (inches) for ``groups`` bar groups of ``series`` bars each."""
    return max(2.6, 0.9 + groups * (0.22 + 0.1 * series))


def plot_latency_percentiles(df: pd.DataFrame, compact: tables.CompactTable, out_dir: Path) -> list[Path]:
    """TTFT, TPOT, ITL and end-to-end p50/p90/p99 per model × precision (lowest-concurrency workload)."""
    lat = _lowest_concurrency(df[df["metric"].str.fullmatch(r"(ttft|tpot|itl|e2e)_p\d+_s")])
    if lat.empty:
        raise NoData("no latency percentiles recorded (ttft/tpot/itl/e2e _pNN_s metrics)")
    several = lat["fingerprint"].dropna().nunique() > 1
    kinds = [k for k in LATENCY_KINDS if lat["metric"].str.startswith(f"{k}_").any()]
    cells = list(dict.fromkeys((r.fingerprint, r.model, r.precision) for r in lat.itertuples()))
    labels = [_label({"model": m, "precision": p, "fingerprint": fp}, several) for fp, m, p in cells]
    fig, axes = new_figure(ncols=min(len(kinds), 2), nrows=math.ceil(len(kinds) / 2), height=_height(len(cells), 3))
    for ax, kind in zip(axes, kinds, strict=False):
        values: dict[str, list[float]] = {p: [] for p in PERCENTILES}
        for fp, model, precision in cells:
            rows = lat[(lat["model"] == model) & (lat["precision"] == precision)]
            if several:
                rows = rows[rows["fingerprint"] == fp]
            got = dict(zip(rows["metric"], rows["value"], strict=True))
            for p in PERCENTILES:
                values[p].append(got.get(f"{kind}_{p}_s", math.nan) * 1e3)
        _bars(ax, labels, values)
        ax.set_title(f"{LATENCY_KINDS[kind]} latency")
        ax.set_xlabel("ms")
        ax.legend(fontsize="small")
    for ax in axes[len(kinds) :]:
        ax.set_visible(False)
    return save_figure(fig, out_dir, "latency_percentiles")


def _cell_labels(compact: tables.CompactTable) -> list[str]:
    f = compact.frame
    several = "fingerprint" in f.columns
    return [_label(r, several) for r in f.to_dict("records")]


def plot_memory(df: pd.DataFrame, compact: tables.CompactTable, out_dir: Path) -> list[Path]:
    """Weights (or checkpoint on disk), KV cache and peak memory per model × precision, in GB."""
    f = compact.frame
    kv = [tables.cell_value(_cell_rows(df, r), ("kv_cache_bytes",)) for r in f.to_dict("records")]
    series = {
        "weights / checkpoint": list(f["weights_bytes"] / 1e9),
        "KV cache": [v / 1e9 for v in kv],
        "peak": list(f["peak_bytes"] / 1e9),
    }
    series = {k: v for k, v in series.items() if any(not math.isnan(x) for x in v)}
    if not series:
        raise NoData("no memory figures recorded (weights_bytes, checkpoint_bytes, kv_cache_bytes, peak memory)")
    fig, (ax,) = new_figure(height=_height(len(f), len(series)))
    _bars(ax, _cell_labels(compact), series)
    ax.set_xlabel("GB")
    ax.set_title("Memory per model × precision")
    ax.legend(fontsize="small")
    return save_figure(fig, out_dir, "memory")


def _cell_rows(df: pd.DataFrame, row: Mapping[str, Any]) -> pd.DataFrame:
    mask = (df["model"] == row["model"]) & (df["precision"] == row["precision"])
    if "fingerprint" in row:
        mask &= df["fingerprint"] == row["fingerprint"]
    return df[mask]


def _no_energy_reason(skipped: Sequence[Mapping[str, Any]]) -> str:
    reasons = [str(s.get("reason")) for s in skipped if "energy" in str(s.get("test", ""))]
    why = f" (energy tests skipped: {reasons[0][:160]})" if reasons else ""
    return f"no energy measured: no j_per_output_token records{why}"


def plot_energy_per_token(
    df: pd.DataFrame, compact: tables.CompactTable, out_dir: Path, skipped: Sequence[Mapping[str, Any]] = ()
) -> list[Path]:
    """Joules per output token per model × precision, one bar per workload (single stream, batch)."""
    energy = df[df["metric"] == "j_per_output_token"]
    if energy.empty:
        raise NoData(_no_energy_reason(skipped))
    variants = list(dict.fromkeys(energy["variant"]))
    labels = _cell_labels(compact)
    series = {}
    for variant in variants:
        series[variant or "all"] = [
            tables.cell_value(_cell_rows(energy[energy["variant"] == variant], r), ("j_per_output_token",))
            for r in compact.frame.to_dict("records")
        ]
    fig, (ax,) = new_figure(height=_height(len(labels), len(series)))
    _bars(ax, labels, series)
    ax.set_xlabel("J / output token")
    ax.set_title("Energy per output token")
    ax.legend(title="workload", fontsize="small")
    return save_figure(fig, out_dir, "energy_per_token")


def plot_accuracy(df: pd.DataFrame, compact: tables.CompactTable, out_dir: Path) -> list[Path]:
    """Each task's headline metric per model × precision, with lm-eval's stderr as error bars."""
    if not compact.tasks:
        raise NoData("no accuracy task recorded (no records with an lm-eval task)")
    tasks = list(compact.tasks.items())
    labels = _cell_labels(compact)
    fig, axes = new_figure(ncols=min(len(tasks), 2), nrows=math.ceil(len(tasks) / 2), height=_height(len(labels)))
    for ax, (task, metric) in zip(axes, tasks, strict=False):
        values, errors = [], []
        for r in compact.frame.to_dict("records"):
            row = tables.pick_record(_cell_rows(df, r), (metric,))
            values.append(math.nan if row is None else float(row["value"]))
            se = math.nan if row is None or row["stderr"] is None else float(row["stderr"])
            errors.append(0.0 if math.isnan(se) else se)
        _bars(ax, labels, {metric: values}, {metric: errors} if any(errors) else None)
        arrow = "higher is better" if compact.higher_is_better[task] else "lower is better"
        ax.set_title(f"{task}: {metric.removeprefix(task + '.')} ({arrow})")
    for ax in axes[len(tasks) :]:
        ax.set_visible(False)
    return save_figure(fig, out_dir, "accuracy")


#: quantization-impact bars: (label, metric names, concurrency rule) — the compact table's figures
IMPACT_METRICS = (
    ("TTFT p50", ("ttft_p50_s",)),
    ("TPOT p50", ("tpot_p50_s",)),
    ("output tok/s", ("output_tokens_per_s",)),
    ("weights", tables.WEIGHTS_METRICS),
    ("peak memory", tables.PEAK_METRICS),
    ("J/token", tables.ENERGY_METRICS),
)


def plot_quantization_impact(
    df: pd.DataFrame, compact: tables.CompactTable, impact: pd.DataFrame, out_dir: Path
) -> list[Path]:
    """Retention (direction-aware ratio against bf16; above 1 is better) of the headline figures, one panel
    per figure, one bar per quantized model × precision, with 95 % intervals where the records carry them."""
    if impact.empty:
        raise NoData("no precision has a bf16 run of the same model to compare with")
    metrics = list(IMPACT_METRICS) + [(task, (m,)) for task, m in compact.tasks.items()]
    impact = impact.sort_values("concurrency", na_position="last", kind="stable")
    cells = list(dict.fromkeys((r.fingerprint, r.model, r.precision) for r in impact.itertuples()))
    several = len({fp for fp, _, _ in cells if isinstance(fp, str)}) > 1
    labels = [_label({"model": m, "precision": p, "fingerprint": fp}, several) for fp, m, p in cells]
    panels = []
    for title, wanted in metrics:
        hits = impact[impact["metric"].isin(wanted)]
        if hits.empty:
            continue
        vals, lo, hi = [], [], []
        for fp, model, precision in cells:
            rows = hits[(hits["model"] == model) & (hits["precision"] == precision)]
            if isinstance(fp, str):
                rows = rows[rows["fingerprint"] == fp]
            if not rows.empty:  # the compact table's figure: its headline test where the run has it
                rows = tables.from_headline_source(rows, str(rows["metric"].iloc[0]))
            if rows.empty:
                vals.append(math.nan)
                lo.append(0.0)
                hi.append(0.0)
                continue
            h = rows.iloc[0]
            vals.append(h["retention"])
            ok = not (math.isnan(h["retention_ci_low"]) or math.isnan(h["retention_ci_high"]))
            lo.append(max(h["retention"] - h["retention_ci_low"], 0.0) if ok else 0.0)
            hi.append(max(h["retention_ci_high"] - h["retention"], 0.0) if ok else 0.0)
        if any(not math.isnan(v) for v in vals):  # e.g. a bf16 score of 0 has no ratio: no empty panel
            panels.append((title, vals, [lo, hi]))
    if not panels:
        raise NoData("no headline figure has a finite ratio against bf16")
    ncols = min(len(panels), 4)
    fig, axes = new_figure(ncols=ncols, nrows=math.ceil(len(panels) / ncols), width=3.6, height=_height(len(cells)))
    for k, (ax, (title, vals, err)) in enumerate(zip(axes, panels, strict=False)):
        _bars(ax, labels, {title: vals}, {title: err})
        ax.axvline(1.0, color="grey", linewidth=1)
        ax.set_title(title)
        if k % ncols:
            ax.tick_params(axis="y", labelleft=False)  # the cells are named in the first column
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    fig.suptitle("Retention against bf16 of the same model (>1 is better; 95 % intervals where known)")
    return save_figure(fig, out_dir, "quantization_impact")


def _pareto(
    compact: tables.CompactTable, out_dir: Path, x_col: str, x_label: str, maximize_x: bool, name: str, why: str
) -> list[Path]:
    f = compact.frame
    tasks = [t for t in compact.tasks if not f[f"task:{t}"].isna().all()]
    if f.empty or not tasks:
        raise NoData("no accuracy task recorded")
    if f[x_col].isna().all():
        voided = "invalid" in f.columns and any(x_col in str(bad).split(", ") for bad in f["invalid"])
        raise NoData(f"every {x_col} measurement was voided (invalid measurement: see results.md)" if voided else why)
    fig, axes = new_figure(ncols=min(len(tasks), 2), nrows=math.ceil(len(tasks) / 2))
    labels = _cell_labels(compact)
    for ax, task in zip(axes, tasks, strict=False):
        xs, ys = list(f[x_col]), list(f[f"task:{task}"])
        hib = compact.higher_is_better[task]
        front = tables.pareto_front(xs, ys, maximize_x=maximize_x, maximize_y=hib)
        ax.scatter(xs, ys, zorder=3, color="tab:blue", label="model × precision")
        ax.plot([xs[i] for i in front], [ys[i] for i in front], "o--", color="tab:red", label="Pareto front", zorder=4)
        # Only the front is labelled: with 20 cells, labels on every point overlap into noise.
        for i in front:
            ax.annotate(labels[i], (xs[i], ys[i]), textcoords="offset points", xytext=(4, 4), fontsize="small")
        ax.set_xlabel(x_label)
        ax.set_ylabel(f"{compact.tasks[task]} ({'higher' if hib else 'lower'} is better)")
        ax.set_title(task)
        ax.legend(fontsize="small")
    for ax in axes[len(tasks) :]:
        ax.set_visible(False)
    return save_figure(fig, out_dir, name)


def plot_pareto_throughput(df: pd.DataFrame, compact: tables.CompactTable, out_dir: Path) -> list[Path]:
    """Accuracy against output tokens/s, the Pareto front dashed."""
    why = "no output_tokens_per_s recorded"
    return _pareto(compact, out_dir, "output_tokens_per_s", "output tokens/s", True, "pareto_accuracy_throughput", why)


def plot_pareto_energy(
    df: pd.DataFrame, compact: tables.CompactTable, out_dir: Path, skipped: Sequence[Mapping[str, Any]] = ()
) -> list[Path]:
    """Accuracy against joules per output token (lower is better), the Pareto front dashed."""
    why = _no_energy_reason(skipped)
    return _pareto(compact, out_dir, "j_per_token", "J / output token", False, "pareto_accuracy_energy", why)


def plot_latency_vs_output_tokens(df: pd.DataFrame, compact: tables.CompactTable, out_dir: Path) -> list[Path]:
    """End-to-end, TTFT and ITL p50 against the number of output tokens (the workload's max_new_tokens),
    one line per model × precision × concurrency; needs runs with at least two output lengths."""
    lat = df[df["metric"].isin(["e2e_p50_s", "ttft_p50_s", "itl_p50_s"]) & df["max_new_tokens"].notna()]
    if lat.empty:
        raise NoData("no latency record carries its workload's max_new_tokens")
    lengths = sorted(set(lat["max_new_tokens"]))
    if len(lengths) < 2:
        raise NoData(
            f"every latency record has max_new_tokens={lengths[0]:g}: a relation needs at least two output "
            "lengths (merge runs made with different --slm-max-new-tokens)"
        )
    metrics = [m for m in ("e2e_p50_s", "ttft_p50_s", "itl_p50_s") if (lat["metric"] == m).any()]
    fig, axes = new_figure(ncols=len(metrics))
    for ax, metric in zip(axes, metrics, strict=True):
        rows = lat[lat["metric"] == metric]
        for (model, precision, conc), g in rows.groupby(["model", "precision", "concurrency"], dropna=False):
            g = g.groupby("max_new_tokens", as_index=False)["value"].median()
            label = f"{model} · {precision}" + ("" if math.isnan(conc) else f" ×{conc:g}")
            ax.plot(g["max_new_tokens"], g["value"] * 1e3, "o-", label=label)
        ax.set_xlabel("output tokens (max_new_tokens)")
        ax.set_ylabel(f"{metric.removesuffix('_s')} (ms)")
        ax.legend(fontsize="small")
    return save_figure(fig, out_dir, "latency_vs_output_tokens")


def draw_all(
    records: Sequence[Mapping[str, Any]],
    compact: tables.CompactTable,
    impact: pd.DataFrame,
    out_dir: Path,
    skipped: Sequence[Mapping[str, Any]] = (),
) -> tuple[list[Path], dict[str, str]]:
    """Every plot that has data; returns the files written and, per plot left out, why."""
    df = tables.records_frame(records)
    plots: dict[str, Callable[[], list[Path]]] = {
        "latency_percentiles": lambda: plot_latency_percentiles(df, compact, out_dir),
        "memory": lambda: plot_memory(df, compact, out_dir),
        "energy_per_token": lambda: plot_energy_per_token(df, compact, out_dir, skipped),
        "accuracy": lambda: plot_accuracy(df, compact, out_dir),
        "quantization_impact": lambda: plot_quantization_impact(df, compact, impact, out_dir),
        "pareto_accuracy_throughput": lambda: plot_pareto_throughput(df, compact, out_dir),
        "pareto_accuracy_energy": lambda: plot_pareto_energy(df, compact, out_dir, skipped),
        "latency_vs_output_tokens": lambda: plot_latency_vs_output_tokens(df, compact, out_dir),
    }
    written: list[Path] = []
    omitted: dict[str, str] = {}
    if df.empty:
        return [], {name: "no records" for name in plots}
    for name, draw in plots.items():
        try:
            written += draw()
        except NoData as exc:
            omitted[name] = str(exc)
    return written, omitted
