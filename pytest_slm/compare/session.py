"""The baseline gate of one pytest process: fingerprint, store, comparisons, saving. Pytest-free."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pytest_slm.compare.baseline import Baseline, BaselineError, BaselineStore, fingerprint
from pytest_slm.record import Metric
from pytest_slm.report.environment import add_gpus
from pytest_slm.settings import Settings


class Gate:
    """Compares a test's metrics with the baseline of this machine's fingerprint, and saves new ones."""

    def __init__(self, settings: Settings, environment: dict[str, Any]) -> None:
        self.settings = settings
        self.environment = environment
        self.store = BaselineStore(settings.baseline_dir)
        self._fingerprints: dict[str | None, str] = {}
        self._loaded: dict[tuple[str, str, str], Baseline | BaselineError | None] = {}

    @property
    def fingerprint(self) -> str:
        """This machine's baseline fingerprint (GPU facts probed on first use, not at collection)."""
        return self.fingerprint_for(None)

    def fingerprint_for(self, parallel: str | None) -> str:
        """The fingerprint for an engine with parallel layout ``parallel`` (``tp2-pp1``; None: one device)."""
        if parallel not in self._fingerprints:
            self._fingerprints[parallel] = fingerprint(add_gpus(self.environment), self.settings.engine, parallel)
        return self._fingerprints[parallel]

    def _load(self, model: str, precision: str, fp: str) -> Baseline | None:
        key = (model, precision, fp)
        if key not in self._loaded:
            try:
                self._loaded[key] = self.store.load(fp, model, precision)
            except BaselineError as exc:
                self._loaded[key] = exc
        found = self._loaded[key]
        if isinstance(found, BaselineError):
            raise found
        return found

    def compare(self, ctx: Any, key: str, taus: Mapping[str, float]) -> tuple[dict[str, dict[str, Any]], list[str]]:
        """Per-metric comparison rows, and the failure messages (regressions; improvements on request)."""
        if self.settings.no_compare or not ctx.metrics or "model" not in ctx.context:
            return {}, []
        model, precision = ctx.context["model"], ctx.context["precision"]
        fp = self.fingerprint_for(ctx.context.get("parallel"))
        try:
            base = self._load(model, precision, fp)
        except BaselineError as exc:
            return {m.name: {"verdict": "error", "note": str(exc)} for m in ctx.metrics}, [str(exc)]
        if base is None:
            others = self.store.other_fingerprints(fp, model, precision)
            if not others:
                return {}, []
            note = f"baselines exist only for {', '.join(others)}; this machine is {fp}: comparison skipped"
            return {m.name: {"verdict": "skipped", "note": note} for m in ctx.metrics}, []
        from pytest_slm.compare.gate import compare_metric, comparison_row  # scipy: only when comparing

        rows: dict[str, dict[str, Any]] = {}
        problems: list[str] = []
        for m in ctx.metrics:
            entry = base.entries.get(f"{key}::{m.name}")
            if entry is None:
                continue
            if entry.get("unit") not in (None, m.unit):
                rows[m.name] = {"verdict": "error", "note": f"unit changed from {entry.get('unit')} to {m.unit}"}
                problems.append(f"{m.name}: baseline unit {entry.get('unit')!r} != current {m.unit!r} ({base.path})")
                continue
            try:
                c = compare_metric(
                    m,
                    entry,
                    tau=taus.get(m.name, self.settings.tolerance),
                    tau_accuracy=taus.get(m.name, self.settings.accuracy_tolerance),
                )
            except ValueError as exc:
                rows[m.name] = {"verdict": "error", "note": str(exc)}
                problems.append(f"{m.name}: {exc} ({base.path})")
                continue
            rows[m.name] = comparison_row(c, str(base.path))
            if c.verdict == "regressed" or (c.verdict == "improved" and self.settings.fail_on_improvement):
                problems.append(c.message(str(base.path)))
        return rows, problems

    def save(self, records: Sequence[Mapping[str, Any]]) -> list[Path]:
        """Write the metrics of passing tests as baselines for this fingerprint (atomic, merged)."""
        from pytest_slm.compare.gate import baseline_entry

        add_gpus(self.environment)  # GPU facts belong in the stored environment
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        versions = self.environment.get("versions", {})
        commit = self.environment.get("git_commit")
        groups: dict[tuple[str, str, str], dict[str, Any]] = {}
        for r in records:
            if r.get("outcome") != "passed" or not r.get("baseline_key") or not r.get("model"):
                continue
            metric = Metric(
                r["metric"],
                r["value"],
                r["unit"],
                r["higher_is_better"],
                r.get("n"),
                r.get("stderr"),
                tuple(r.get("samples") or ()),
                r.get("info") or {},
            )
            fp = self.fingerprint_for(r.get("parallel"))
            groups.setdefault((fp, r["model"], r["precision"]), {})[r["baseline_key"]] = baseline_entry(
                metric, now, commit, versions
            )
        return [
            self.store.update(fp, model, precision, self.environment, entries)
            for (fp, model, precision), entries in sorted(groups.items())
        ]
