"""What the ``slm`` fixture hands a test: its settings, its engine cell, and the recorder."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, TypeVar, runtime_checkable

from pytest_slm.engine_api import Engine, EngineSpec
from pytest_slm.measure import machine
from pytest_slm.measure.workloads import OfflineRun, StreamingRun, Workload, run_offline, run_streaming
from pytest_slm.record import Metric, Recorder
from pytest_slm.settings import Settings


@runtime_checkable
class Window(Protocol):
    """A measured window (a streaming, offline or serving run): why its figures cannot be trusted."""

    def problems(self, max_foreign_cores: float = ...) -> list[str]: ...


@dataclass
class BenchContext(Recorder):
    """The per-test handle: ``slm.record(...)``, ``slm.settings``, ``slm.workload("batch")``.

    Validity by default: the session's caches (``slm_runs``, ``slm_serving``) pass every run they
    hand out while this test runs to :meth:`observe`, so each figure the test records, derived ones
    included, is invalid when a window it took is."""

    settings: Settings = field(default_factory=Settings)
    spec: EngineSpec | None = None
    attachments: dict[str, list[Any]] = field(default_factory=dict)
    #: the engine's tokenizer when prompts get its chat template (None: raw prompts)
    chat_tokenizer: Any = None
    #: windows whose validity was applied to this test (runs observed, once each, and each
    #: :meth:`validate` of the test's own reasons); 0: its figures rest on no checked window
    checked_windows: int = 0
    _observed: list[Window] = field(default_factory=list, init=False, repr=False)

    def record(self, name: str, value: float, **kwargs: Any) -> Metric:
        """Record one figure (see :meth:`Recorder.record`); a non-default KV-cache dtype joins its workload."""
        metric = super().record(name, value, **kwargs)
        self.metrics[-1] = self._with_kv(metric)
        return self.metrics[-1]

    def extend(self, metrics: Iterable[Metric]) -> None:
        super().extend(self._with_kv(m) for m in metrics)

    def _with_kv(self, metric: Metric) -> Metric:
        # KV-cache dtype identifies what was measured, like concurrency; "auto" (the default)
        # is left out so figures measured before the axis existed keep their identity.
        kv = self.spec.kv_cache_dtype if self.spec is not None else "auto"
        if kv == "auto":
            return metric
        workload = {**(metric.info.get("workload") or {}), "kv_cache_dtype": kv}
        return replace(metric, info={**metric.info, "workload": workload})

    def attach(self, relpath: str, rows: list[Any]) -> None:
        """Rows to write as JSONL at ``<--slm-output>/<relpath>`` (by the controller, atomically)."""
        if relpath.startswith("/") or ".." in relpath.split("/"):
            raise ValueError(f"attachment path {relpath!r} must stay inside the output directory")
        self.attachments[relpath] = rows

    def observe(self, window: Window) -> None:
        """Apply a measured window's validity to this test: its ``problems()``, asked with this
        session's limits (e.g. ``--slm-max-foreign-load``), make every figure of the test invalid.
        The run caches call this for each run they hand out during the test; a window observed
        again (a memoized run taken twice, or also passed to :meth:`validate`) counts once."""
        if any(seen is window for seen in self._observed):
            return
        self._observed.append(window)
        self.checked_windows += 1
        super().validate(window.problems(max_foreign_cores=self.settings.max_foreign_load))

    def validate(self, problems: Window | Iterable[str]) -> None:
        """Mark this test's measurement invalid for each problem: a run object (:meth:`observe`; a run
        from ``slm_runs`` or ``slm_serving`` is observed already), or the reasons of a window the test
        measured itself (an energy window, a ``CpuWindow``), which count as one checked window."""
        if isinstance(problems, Window):
            self.observe(problems)
            return
        self.checked_windows += 1
        super().validate(problems)

    def workload(self, streams: str | int) -> Workload:
        """The streaming request shape for ``"single"`` (one stream, the fixed ``--slm-prompt``),
        ``"batch"`` (``--slm-batch-size`` concurrent streams) or an explicit concurrency (distinct
        prompts from the shipped prompt set), with this test's run-size settings."""
        if streams == "single":
            return self._workload(1, fixed=True)
        if streams == "batch":
            return self._workload(self.settings.batch_size)
        if isinstance(streams, int) and streams >= 1:
            return self._workload(streams)
        raise ValueError(f"streams must be 'single', 'batch' or a positive int, got {streams!r}")

    def offline_workload(self, requests: int | None = None) -> Workload:
        """The offline batch shape: ``--slm-offline-requests`` distinct shipped prompts per batch."""
        return self._workload(requests or self.settings.offline_requests)

    def _workload(self, concurrency: int, *, fixed: bool = False) -> Workload:
        s = self.settings
        extra = {"prefix_caching": s.prefix_caching, "chat_template": self.chat_tokenizer is not None}
        if fixed:
            pool: tuple[str, ...] = (s.prompt,)
        else:
            from pytest_slm.measure.prompts import load_prompt_set

            pool = load_prompt_set("shipped").prompts[: max(concurrency, 1)]
        if self.chat_tokenizer is not None:
            from pytest_slm.measure.chat import render

            pool = tuple(render(self.chat_tokenizer, p) for p in pool)
        return Workload(
            concurrency, pool, s.max_new_tokens, s.num_warmup, s.num_runs, s.target_ci, s.max_runs,
            prompt_source="fixed" if fixed else "shipped", extra=extra,
        )  # fmt: skip


_Run = TypeVar("_Run", StreamingRun, OfflineRun)
#: what a session's run cache calls with every run it hands out (the current test's :meth:`BenchContext.observe`)
HandOut = Callable[[Window], None]


class RunCache:
    """Measured runs of one engine, memoized by workload: the TTFT, TPOT, ITL and E2E
    tests of one workload share a single streaming run instead of repeating it.

    Every run handed out goes to ``on_handout`` (the ``slm_runs`` fixture passes one that finds the
    running test's :class:`BenchContext`), each time it is handed out: a memoized run's validity
    applies to every test that takes it."""

    def __init__(self, engine: Engine, *, machine_check: bool = True, on_handout: HandOut | None = None) -> None:
        self.engine = engine
        #: the engine's reference-kernel timer (``machine_probe``), where it has one and it is wanted
        self.prober = machine.session_prober(engine, machine_check)
        self.on_handout = on_handout
        self._streaming: dict[Workload, StreamingRun] = {}
        self._offline: dict[Workload, OfflineRun] = {}

    def streaming(self, workload: Workload, *, inherit_validity: bool = True) -> StreamingRun:
        """The workload's streaming run (measured on first use). ``inherit_validity=False``: the
        caller does not record figures from the run (it only needs the engine to have worked)."""
        if workload not in self._streaming:
            self._streaming[workload] = run_streaming(self.engine, workload, self.prober)
        return self._hand_out(self._streaming[workload], inherit_validity)

    def offline(self, workload: Workload, *, inherit_validity: bool = True) -> OfflineRun:
        """The workload's offline run (measured on first use); ``inherit_validity`` as for :meth:`streaming`."""
        if workload not in self._offline:
            self._offline[workload] = run_offline(self.engine, workload, prober=self.prober)
        return self._hand_out(self._offline[workload], inherit_validity)

    def _hand_out(self, run: _Run, inherit_validity: bool) -> _Run:
        if inherit_validity and self.on_handout is not None:
            self.on_handout(run)
        return run
