"""What the ``slm`` fixture hands a test: its settings, its engine cell, and the recorder."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from pytest_slm.engines.base import Engine, EngineSpec
from pytest_slm.measure import machine
from pytest_slm.measure.workloads import OfflineRun, StreamingRun, Workload, run_offline, run_streaming
from pytest_slm.record import Metric, Recorder
from pytest_slm.settings import Settings


@dataclass
class BenchContext(Recorder):
    """The per-test handle: ``slm.record(...)``, ``slm.settings``, ``slm.workload("batch")``."""

    settings: Settings = field(default_factory=Settings)
    spec: EngineSpec | None = None
    attachments: dict[str, list[Any]] = field(default_factory=dict)
    #: the engine's tokenizer when prompts get its chat template (None: raw prompts)
    chat_tokenizer: Any = None

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

    def validate(self, problems: Any) -> None:
        """Mark this test's measurement invalid for each problem: a list of reasons, or a run object
        (its ``problems()`` are asked with this session's limits, e.g. ``--slm-max-foreign-load``)."""
        if hasattr(problems, "problems"):
            problems = problems.problems(max_foreign_cores=self.settings.max_foreign_load)
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


class RunCache:
    """Measured runs of one engine, memoized by workload: the TTFT, TPOT, ITL and E2E
    tests of one workload share a single streaming run instead of repeating it."""

    def __init__(self, engine: Engine, *, machine_check: bool = True) -> None:
        self.engine = engine
        #: the engine's reference-kernel timer (``machine_probe``), where it has one and it is wanted
        self.prober = machine.session_prober(engine, machine_check)
        self._streaming: dict[Workload, StreamingRun] = {}
        self._offline: dict[Workload, OfflineRun] = {}

    def streaming(self, workload: Workload) -> StreamingRun:
        if workload not in self._streaming:
            self._streaming[workload] = run_streaming(self.engine, workload, self.prober)
        return self._streaming[workload]

    def offline(self, workload: Workload) -> OfflineRun:
        if workload not in self._offline:
            self._offline[workload] = run_offline(self.engine, workload, prober=self.prober)
        return self._offline[workload]
