"""Optional Weights & Biases logging (``--slm-wandb PROJECT``), on the xdist controller at session end.

One W&B run per pytest session: the environment as the run config, every record as a row of the
``records`` table and as a summary value (``<test>::<metric>``), and the report files (results.json,
results.md, the dashboard feeds, attachments) as a ``pytest-slm-results`` artifact. wandb's own
settings apply (``WANDB_MODE=offline`` logs to disk; ``WANDB_DIR``, ``WANDB_ENTITY``...). The report
files are written before logging starts, so a W&B failure loses nothing: it is shown in the summary.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from pytest_slm.report.collector import ReportCollector
from pytest_slm.results import COLUMNS, column_values


class WandbUnavailable(RuntimeError):
    """--slm-wandb was given but wandb cannot be imported."""


def require_wandb() -> Any:
    """The wandb module, or a clear error saying how to get it."""
    try:
        import wandb
    except ImportError as exc:
        raise WandbUnavailable(
            f"--slm-wandb needs the wandb package, which cannot be imported here ({exc}); "
            "install it with `pip install wandb` (or `pip install pytest-slm[wandb]`), or drop --slm-wandb"
        ) from None
    return wandb


def table_rows(records: Sequence[Mapping[str, Any]]) -> list[list[Any]]:
    """One row per record, in :data:`pytest_slm.results.COLUMNS` order."""
    return [list(column_values(r).values()) for r in records]


def log_session(
    wandb: Any,
    project: str,
    environment: Mapping[str, Any],
    records: Sequence[Mapping[str, Any]],
    output: Path,
    files: Sequence[Path],
) -> str:
    """Log one session as one W&B run (``files`` under ``output`` keep their relative paths); returns its id."""
    run = wandb.init(project=project, job_type="pytest-slm", config={"environment": dict(environment)})
    try:
        run.log({"records": wandb.Table(columns=list(COLUMNS), data=table_rows(records))})
        for r in records:
            run.summary[f"{r.get('test')}::{r.get('metric')}"] = r.get("value")
        if files:
            artifact = wandb.Artifact("pytest-slm-results", type="pytest-slm-results")
            for f in files:
                artifact.add_file(str(f), name=f.relative_to(output).as_posix())
            run.log_artifact(artifact)
        return str(run.id)
    finally:
        run.finish()


class WandbHooks:
    """Controller-only: logs the session to W&B after the report files are written."""

    def __init__(self, project: str, wandb: Any, collector: ReportCollector) -> None:
        self.project = project
        self.wandb = wandb
        self.collector = collector
        self.outcome: str | None = None

    @pytest.hookimpl(trylast=True)  # after the report hooks flushed results.json / results.md
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        collector = self.collector
        files = sorted(p for p in collector.output.rglob("*") if p.is_file()) if collector.output.is_dir() else []
        try:
            run_id = log_session(
                self.wandb, self.project, collector.environment, collector.records, collector.output, files
            )
        except Exception as exc:  # measurements are on disk already; say what happened, keep them
            self.outcome = f"W&B logging to project {self.project!r} failed: {type(exc).__name__}: {exc}"
            return
        self.outcome = (
            f"logged {len(collector.records)} record(s) and {len(files)} file(s) to W&B project "
            f"{self.project!r}, run {run_id}"
        )

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if self.outcome:
            terminalreporter.write_line(f"pytest-slm: {self.outcome}")
