"""The baseline gate of one pytest process: fingerprint, store, family, comparisons, saving. Pytest-free.

Family-wise control: one session makes dozens of comparisons, so each is made at
``alpha_family / m`` (Bonferroni), where ``m`` is the number of gated baseline entries the
session's collected tests can meet. Bonferroni needs no other test's result, so every test
still gets its verdict the moment it finishes, and the chance of any false alarm in the whole
session stays at most ``alpha_family``.

Saving (``--slm-save-baseline``) follows one rule: a metric is written when its test passed;
a metric whose test failed (a regression, an improvement with ``--slm-fail-on-improvement``,
a threshold) or whose stored workload differs is written only with ``--slm-baseline-accept``,
and then starts a new session history; an invalid measurement is never written, except one
whose only reason is that the machine moved since the baseline (the reference kernel), which
``--slm-baseline-accept`` writes as the start of a new history. What was and
was not written is returned with the reason, for the terminal summary.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pytest_slm.compare import policy
from pytest_slm.compare.baseline import Baseline, BaselineError, BaselineStore, fingerprint
from pytest_slm.compare.confirm import EarlierRun
from pytest_slm.measure.machine import SHIFT_REASON_PREFIX
from pytest_slm.parallel import fingerprint_suffix
from pytest_slm.record import Metric
from pytest_slm.results import NO_EVIDENCE, ComparisonRow, Verdict
from pytest_slm.results.environment import add_gpus
from pytest_slm.settings import Settings


@dataclass
class GateResult:
    """What the gate made of one test's figures: a comparison row per figure, the failure messages
    (a regression; an improvement on request; a comparison that could not be made), and why the
    test's window is void (the machine moved since the baseline: its caller marks the test invalid)."""

    rows: dict[str, ComparisonRow] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)

    @property
    def stood(self) -> bool:
        """Whether the rows are an earlier run's verdicts standing for an invalid confirmation."""
        return stood(self.rows)


@dataclass
class SaveReport:
    """What ``--slm-save-baseline`` wrote, and what it did not write and why."""

    written: dict[Path, int] = field(default_factory=dict)
    not_written: list[tuple[str, str]] = field(default_factory=list)
    #: unreadable baseline files a save moved aside (``*.corrupt``) instead of writing over them
    set_aside: list[str] = field(default_factory=list)


class Gate:
    """Compares a test's metrics with the baseline of this machine's fingerprint, and saves new ones."""

    def __init__(self, settings: Settings, environment: dict[str, Any]) -> None:
        self.settings = settings
        self.environment = environment
        self.store = BaselineStore(settings.baseline_dir)
        self._fingerprint: str | None = None
        #: the GPU this process measures on (its device choice), when it has one
        self.device_gpu_name: str | None = None
        self._loaded: dict[tuple[str, str, str], Baseline | BaselineError | None] = {}
        #: gated baseline entries this session's tests can meet (the Bonferroni family)
        self.family = 0
        #: per baseline file, its machine's noise beyond one entry (``gate.baseline_spread``)
        self._spreads: dict[Path, Any] = {}
        #: ``--slm-confirm``: the earlier run of this code whose figures are pooled with this session's
        self.earlier_run: EarlierRun | None = None

    @property
    def fingerprint(self) -> str:
        """This process's baseline fingerprint: the GPU it measures on (its device choice; else what
        NVML lists first), probed on first use, not at collection."""
        if self._fingerprint is None:
            self._fingerprint = self.fingerprint_for(self.device_gpu_name)
        return self._fingerprint

    def fingerprint_for(self, gpu_name: str | None, parallel: str | None = None) -> str:
        """The fingerprint of this machine with ``gpu_name`` as the measuring GPU, for an engine with
        parallel layout ``parallel`` (``tp2-pp1``: a multi-device layout adds a suffix; None: one device)."""
        env = add_gpus(self.environment)
        if gpu_name:
            env = {**env, "hardware": {**env.get("hardware", {}), "gpu_name": gpu_name}}
        return fingerprint(env, self.settings.engine, parallel)

    def fingerprint_of(self, parallel: str | None) -> str:
        """This process's fingerprint for an engine with layout ``parallel``."""
        return (
            self.fingerprint
            if fingerprint_suffix(parallel) == ""
            else self.fingerprint_for(self.device_gpu_name, parallel)
        )

    @property
    def alpha(self) -> float:
        """The per-comparison level: the family-wise level over the family (in a confirmation, never
        laxer than the earlier run's: its family was the whole session's)."""
        own = self.settings.alpha / max(1, self.family)
        earlier = self.earlier_run.alpha if self.earlier_run is not None else None
        return min(own, earlier) if earlier else own

    def _load(self, model: str, precision: str, parallel: str | None = None) -> Baseline | None:
        fp = self.fingerprint_of(parallel)
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

    def plan(
        self,
        tests: Iterable[tuple[str, str, str, str | None]],
        other_shards: Iterable[tuple[str, str, str | None]] = (),
    ) -> int:
        """Count the family from the collected ``(model, precision, baseline key, layout)`` tuples.
        ``other_shards``: the ``(model, precision, layout)`` cells the other shards of ``--slm-shard``
        run: they run the same tests, so their gated entries for this shard's test keys join the
        family, and the false-alarm level holds for the whole split, not for each shard."""
        if self.settings.no_compare or not self.store.root.is_dir():
            return 0
        by_cell: dict[tuple[str, str, str | None], set[str]] = {}
        for model, precision, key, parallel in tests:
            by_cell.setdefault((model, precision, parallel), set()).add(key)
        every_key = set().union(*by_cell.values()) if by_cell else set()
        for cell in other_shards:
            by_cell.setdefault(cell, set()).update(every_key)
        family = 0
        for (model, precision, parallel), keys in by_cell.items():
            try:
                base = self._load(model, precision, parallel)
            except BaselineError:
                continue
            if base is not None:
                family += policy.family(base.entries, keys)
        self.family = family
        return family

    def compare(
        self,
        metrics: Sequence[Metric],
        context: Mapping[str, Any],
        key: str,
        taus: Mapping[str, float],
        identities: Mapping[str, Mapping[str, Any]],
        invalid_reasons: Sequence[str] = (),
    ) -> GateResult:
        """One test's figures (``context``: its engine cell; ``invalid_reasons``: why its measurement is
        invalid, if it is) through the ladder of :mod:`pytest_slm.compare.judge`: the comparison rows,
        the failure messages (regressions; improvements on request) and why the test's window turned
        out void (the machine moved since the baseline)."""
        if self.settings.no_compare or not metrics or "model" not in context:
            return GateResult()
        model, precision = context["model"], context["precision"]
        from pytest_slm.compare import judge  # numpy and scipy: only when comparing

        if invalid_reasons:  # decided before any baseline is read: nothing is compared
            rows = {m.name: judge.invalid_row(invalid_reasons) for m in metrics}
            return GateResult(self._standing(metrics, context, key, identities, invalid_reasons, rows))
        try:
            base = self._load(model, precision, context.get("parallel"))
        except BaselineError as exc:
            return GateResult({m.name: {"verdict": Verdict.ERROR, "note": str(exc)} for m in metrics}, [str(exc)])
        if base is None:
            return GateResult(self._elsewhere(metrics, model, precision, context.get("parallel")))
        if base.path not in self._spreads:
            self._spreads[base.path] = judge.baseline_spread(base.entries)
        level = judge.Level(
            self.alpha,
            min_sessions=self.settings.min_sessions,
            fail_on_improvement=self.settings.fail_on_improvement,
        )
        out = GateResult()
        for m in metrics:
            name = f"{key}::{m.name}"
            earlier: tuple[float, ...] = ()
            why_not = ""
            if self.earlier_run is not None and policy.is_gated(m.name) and name in base.entries:
                earlier, why_not = self.earlier_run.earlier(model, precision, name, identities.get(m.name, {}))
            found = judge.judge(
                m,
                base.entries.get(name),
                replace(level, tau=taus.get(m.name, self.settings.tolerance),
                        tau_accuracy=taus.get(m.name, self.settings.accuracy_tolerance)),
                workload=identities.get(m.name, {}),
                spread=self._spreads[base.path],
                earlier=earlier,
                baseline_file=str(base.path),
            )  # fmt: skip
            if found is None or found.verdict == Verdict.NOT_GATED:
                continue
            row = out.rows[m.name] = found.row
            if why_not and found.comparison is not None and found.comparison.n_current <= 1:
                row["note"] = f"{row.get('note') or ''}; {why_not}".lstrip("; ")
            if found.problem is not None:
                out.problems.append(found.problem)
            if found.void is not None and found.void not in out.invalid:
                out.invalid.append(found.void)
        if out.invalid:  # the machine moved during this test's window: it decides nothing
            return GateResult(self._standing(metrics, context, key, identities, out.invalid, out.rows), [], out.invalid)
        return out

    def _elsewhere(
        self, metrics: Sequence[Metric], model: str, precision: str, parallel: str | None
    ) -> dict[str, ComparisonRow]:
        """No baseline here: "skipped" rows when another machine has one, else none."""
        fp = self.fingerprint_of(parallel)
        others = self.store.other_fingerprints(fp, model, precision)
        if not others:
            return {}
        note = f"baselines exist only for {', '.join(others)}; this machine is {fp}: comparison skipped"
        return {m.name: {"verdict": Verdict.SKIPPED, "note": note} for m in metrics if policy.is_gated(m.name)}

    def unmeasured(
        self, model: str, precision: str, parallel: str | None, key: str, measured: Iterable[str], why: str
    ) -> list[dict[str, Any]]:
        """The gated figures this machine's baseline holds for test ``key`` that the test did not
        measure (``measured``: the metric names it recorded; none for a skipped test), as rows for
        the report: a figure that silently stops being measured is not a pass."""
        if self.settings.no_compare:
            return []
        try:
            base = self._load(model, precision, parallel)
        except BaselineError:
            return []  # the test's own comparison reports the unreadable file
        if base is None:
            return []
        done = set(measured)
        out = []
        for name in sorted(base.entries):
            test_key, _, metric = name.rpartition("::")
            if test_key == key and metric not in done and policy.is_gated(metric):
                out.append({"model": model, "precision": precision, "metric": metric, "baseline_key": name,
                            "why": why, "file": str(base.path)})  # fmt: skip
        return out

    def _standing(
        self,
        metrics: Sequence[Metric],
        context: Mapping[str, Any],
        key: str,
        identities: Mapping[str, Mapping[str, Any]],
        reasons: Sequence[str],
        rows: dict[str, ComparisonRow],
    ) -> dict[str, ComparisonRow]:
        """The rows of a test whose window was invalid: in a confirmation whose earlier run passed the
        test, that run's rows (``stood``: see :mod:`pytest_slm.compare.confirm`); else ``rows`` (the
        comparisons made before the machine check voided the window, kept for the record, or
        "invalid" for every figure)."""
        if self.earlier_run is not None:
            gated = {m.name: f"{key}::{m.name}" for m in metrics if policy.is_gated(m.name)}
            why = "; ".join(reasons)
            stood = self.earlier_run.standing(context["model"], context["precision"], gated, identities, why)
            if stood is not None:
                return stood
        return rows

    def save(self, records: Sequence[Mapping[str, Any]], engines: Mapping[str, Any] | None = None) -> SaveReport:
        """Write this session's figures as baselines (see the module docstring), each under the
        fingerprint of the GPU its engine ran on (``engines``: engine id -> facts, from the report)."""
        from pytest_slm.compare.judge import baseline_entry

        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        versions = self.environment.get("versions", {})
        commit = self.environment.get("git_commit")
        accept = self.settings.baseline_accept
        report = SaveReport()
        groups: dict[tuple[str, str, str], dict[str, Any]] = {}
        resets: dict[tuple[str, str, str], set[str]] = {}
        for r in records:
            if not r.get("baseline_key") or not r.get("model") or not policy.is_gated(r["metric"]):
                continue
            key = r["baseline_key"]
            verdict = (r.get("baseline") or {}).get("verdict")
            outcome = r.get("outcome")
            reset = False
            if outcome == "invalid" or verdict == Verdict.INVALID:
                reasons = r.get("invalid_reasons") or []
                machine_moved = bool(reasons) and all(x.startswith(SHIFT_REASON_PREFIX) for x in reasons)
                if not (accept and machine_moved):
                    moved = "the machine moved since the baseline; --slm-baseline-accept re-saves it"
                    report.not_written.append((key, moved if machine_moved else "invalid measurement"))
                    continue
                reset = True  # accepted: the machine changed for good, its history starts again
            if outcome != "passed":
                if not accept:
                    changed = verdict in (Verdict.REGRESSED, Verdict.IMPROVED)
                    why = f"its test {outcome}" + (f" ({verdict})" if changed else "")
                    report.not_written.append((key, why + "; pass --slm-baseline-accept to accept it"))
                    continue
                reset = True
            if verdict == Verdict.INCOMPARABLE:
                if not accept:
                    report.not_written.append((key, "the stored entry has another workload; --slm-baseline-accept "
                                               "replaces it"))  # fmt: skip
                    continue
                reset = True
            if verdict in (Verdict.IMPROVED, Verdict.REGRESSED):
                reset = True  # a real change: the history before it measured something else
            metric = Metric(
                r["metric"], r["value"], r["unit"], r["higher_is_better"], r.get("n"), r.get("stderr"),
                tuple(r.get("samples") or ()), r.get("info") or {},
            )  # fmt: skip
            facts = (engines or {}).get(r.get("engine_id") or "", {})
            gpu = (facts.get("device_choice") or {}).get("gpu_name")
            parallel = r.get("parallel")  # a multi-device layout has its own fingerprint
            fp = self.fingerprint_for(gpu, parallel) if gpu else self.fingerprint_of(parallel)
            cell = (fp, r["model"], r["precision"])
            groups.setdefault(cell, {})[key] = baseline_entry(metric, r.get("workload") or {}, now, commit, versions)
            if reset:
                resets.setdefault(cell, set()).add(key)
        for (fp, model, precision), entries in sorted(groups.items()):
            try:
                path = self.store.update(
                    fp, model, precision, self.environment, entries, frozenset(resets.get((fp, model, precision), ()))
                )
            except BaselineError as exc:  # e.g. a model name that would leave the folder: the others still save
                report.not_written += [(key, str(exc)) for key in entries]
                continue
            report.written[path] = len(entries)
        report.set_aside = [s.message() for s in self.store.set_aside]
        return report


def stood(comparisons: Mapping[str, Mapping[str, Any]]) -> bool:
    """Whether a test's rows are an earlier run's verdicts standing for an invalid confirmation."""
    return bool(comparisons) and all(row.get("stood") for row in comparisons.values())


#: how a failure of ``--slm-strict`` starts
STRICT_PREFIX = "--slm-strict: "


def strict_failures(
    metrics: Iterable[Metric],
    comparisons: Mapping[str, Mapping[str, Any]],
    missing: Sequence[Mapping[str, Any]],
    *,
    compared: bool,
) -> list[str]:
    """``--slm-strict``: each gated figure that passed without evidence of no regression, and each
    figure the baseline holds that the test did not record."""
    out = []
    for m in metrics:
        if not policy.is_gated(m.name):
            continue
        row = comparisons.get(m.name)
        if row is None and compared:
            out.append(f"{STRICT_PREFIX}{m.name}: no baseline to compare with")
        elif row is not None and row.get("verdict") in NO_EVIDENCE:
            out.append(f"{STRICT_PREFIX}{m.name} {row['verdict']}: {row.get('note') or ''}".rstrip(": "))
    out += [f"{STRICT_PREFIX}{u['metric']} is in the baseline ({u['file']}) but was not measured" for u in missing]
    return out
