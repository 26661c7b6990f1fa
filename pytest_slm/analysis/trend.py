"""``pytest-slm trend DIR --metric NAME``: one metric over a series of results files (a history of CI
runs), ordered by the run's start time (``environment.started_at``; a file without it by its
modification time, and the table says which), as a table and a plot."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_slm import results
from pytest_slm.analysis.merge import run_started_at
from pytest_slm.report.tables import stderr_of
from pytest_slm.results import InputError, variant_of

if TYPE_CHECKING:
    import pandas as pd


@dataclass
class Trend:
    """One row per (run, series); a series is model · precision · test variant."""

    frame: pd.DataFrame
    errors: list[InputError] = field(default_factory=list)
    files: int = 0


def collect(
    paths: Sequence[Path],
    metric: str,
    *,
    model: str | None = None,
    precision: str | None = None,
    test: str | None = None,
) -> Trend:
    import pandas as pd

    files, errors = results.find(paths)
    rows: list[dict[str, Any]] = []
    for path in files:
        try:
            doc = results.read(path)
        except results.ResultsFileError as exc:
            errors.append(InputError(str(path), str(exc)))
            continue
        errors.extend(doc.problems)
        started, how = run_started_at(path, doc.environment)
        for r in doc.records:
            if r["metric"] != metric:
                continue
            if model is not None and r.get("model") != model:
                continue
            if precision is not None and r.get("precision") != precision:
                continue
            if test is not None and test not in str(r.get("test")):
                continue
            variant = variant_of(r)
            rows.append(
                {
                    "started_at": started,
                    "time_source": how,
                    "file": str(path),
                    "git_commit": doc.environment.get("git_commit"),
                    "series": f"{r.get('model')} · {r.get('precision')}" + (f" · {variant}" if variant else ""),
                    "test": r.get("test"),
                    "value": float(r["value"]),
                    "stderr": stderr_of(r),
                    "unit": r.get("unit"),
                    "outcome": r.get("outcome"),
                }
            )
    columns = [
        "started_at",
        "time_source",
        "file",
        "git_commit",
        "series",
        "test",
        "value",
        "stderr",
        "unit",
        "outcome",
    ]
    frame = pd.DataFrame(rows, columns=columns)
    if not frame.empty:
        frame = frame.sort_values(["started_at", "file", "series"], kind="stable").reset_index(drop=True)
    return Trend(frame, errors, len(files))


def table(trend: Trend) -> pd.DataFrame:
    """Runs as rows (time order), series as columns."""
    f = trend.frame
    wide = f.pivot_table(index=["started_at", "file"], columns="series", values="value", aggfunc="first", sort=False)
    wide = wide.reset_index()
    wide.columns.name = None
    return wide


def plot(trend: Trend, metric: str, out_dir: Path) -> list[Path]:
    """The metric against the run index (labelled with the run time), one line per series."""
    from pytest_slm.analysis.plots import new_figure, save_figure

    f = trend.frame
    runs = list(dict.fromkeys(zip(f["started_at"], f["file"], strict=True)))
    index = {run: i for i, run in enumerate(runs)}
    fig, (ax,) = new_figure(width=max(6.4, 0.5 * len(runs) + 3))
    for series, g in f.groupby("series", sort=False):
        xs = [index[(t, p)] for t, p in zip(g["started_at"], g["file"], strict=True)]
        errs = [0.0 if math.isnan(e) else e for e in g["stderr"]]
        ax.errorbar(xs, g["value"], yerr=errs, marker="o", capsize=3, label=str(series))
    ax.set_xticks(range(len(runs)), [t[:16].replace("T", "\n") for t, _ in runs], fontsize="small")
    unit = f["unit"].dropna().iloc[0] if f["unit"].notna().any() else ""
    ax.set_ylabel(f"{metric} ({unit})" if unit else metric)
    ax.set_xlabel("run (start time, UTC)")
    ax.set_title(f"{metric} over {len(runs)} run(s)")
    ax.legend(fontsize="small")
    return save_figure(fig, out_dir, f"trend_{metric}")
