"""Workloads: warm-up, then measured repetitions of a request shape on an engine.

A *repetition* is one request for single-stream latency, ``concurrency`` concurrent requests
for concurrent latency, one offline batch for throughput. Warm-up repetitions run first and are
discarded. Prompts come from a pool: every repetition sends the first ``concurrency`` prompts of
the pool (distinct while the pool lasts), so repetitions differ only by noise and two sessions
send the same requests.

Each measured run also records what the machine did meanwhile (:class:`CpuWindow`, counting a
server the engine runs on this machine as ours) and knows what makes it untrustworthy
(:meth:`StreamingRun.problems`, :meth:`OfflineRun.problems`).
"""

from __future__ import annotations

import hashlib
import itertools
import math
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pytest_slm.engine_api import BatchOutput, Engine, SamplingSpec, StreamTrace, tpot_s
from pytest_slm.measure import machine, validity
from pytest_slm.measure.machine import Probe, Prober
from pytest_slm.stats import percentile


def prompts_digest(prompts: Sequence[str]) -> str:
    return hashlib.sha256("\x1e".join(prompts).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Workload:
    """The request shape: how many concurrent requests, from which prompts, for how many tokens."""

    concurrency: int
    prompts_pool: tuple[str, ...]
    max_new_tokens: int
    num_warmup: int
    num_runs: int
    #: adaptive repetitions: keep going past num_runs until the 95 % CI half-width of every gated
    #: statistic is within this fraction of its mean, or max_runs is reached (None: fixed num_runs)
    target_rel_ci: float | None = None
    max_runs: int | None = None
    #: where the prompts came from (identity for baselines): "fixed", "shipped", ...
    prompt_source: str = "fixed"
    #: extra identity fields (chat template, prefix caching, ...)
    extra: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if not self.prompts_pool:
            raise ValueError("a workload needs at least one prompt")

    @property
    def sampling(self) -> SamplingSpec:
        return SamplingSpec(max_new_tokens=self.max_new_tokens)

    def prompts(self) -> list[str]:
        """The prompts of one repetition: the first ``concurrency`` prompts of the pool (a pool
        smaller than the concurrency is cycled; :attr:`distinct_per_repetition` says so)."""
        pool = self.prompts_pool
        return [pool[i % len(pool)] for i in range(self.concurrency)]

    @property
    def distinct_per_repetition(self) -> int:
        return min(self.concurrency, len(self.prompts_pool))

    def describe(self) -> dict[str, Any]:
        """The identity of this workload (flat JSON scalars): what a baseline must share to compare."""
        return {
            "concurrency": self.concurrency,
            "max_new_tokens": self.max_new_tokens,
            "num_warmup": self.num_warmup,
            "num_runs": self.num_runs,
            "target_rel_ci": self.target_rel_ci,
            "max_runs": self.max_runs,
            "prompt_source": self.prompt_source,
            "prompt_distinct": self.distinct_per_repetition,
            "prompt_sha256": prompts_digest(self.prompts()),
            **dict(self.extra),
        }


@dataclass(frozen=True)
class StreamingRun:
    """Measured repetitions of a streaming workload (warm-up excluded)."""

    workload: Workload
    repetitions: tuple[tuple[StreamTrace, ...], ...]
    #: 95 % CI half-width (relative) of each adaptive statistic over the repetitions
    achieved_rel_ci: Mapping[str, float] = field(default_factory=dict)
    cpu: validity.CpuUsage | None = None
    #: the reference kernel timed right before and right after the measured window
    machine: tuple[Probe | None, Probe | None] = (None, None)

    def problems(self, max_foreign_cores: float = validity.MAX_FOREIGN_LOAD) -> list[str]:
        """Why these figures cannot be trusted (empty when they can). ``max_foreign_cores`` is
        ``--slm-max-foreign-load``: a share of the machine's cores (the name is from when it
        counted cores; :class:`pytest_slm.measure.context.Window` callers pass it by that name)."""
        out: list[str] = []
        traces = [t for rep in self.repetitions for t in rep]
        delivery = [
            t.token_times_s[0] - t.engine["first_token_ts"]
            for t in traces
            if t.token_times_s and "first_token_ts" in t.engine
        ]
        engine_ttft = [t.engine["first_token_ts"] - t.submit_s for t in traces if "first_token_ts" in t.engine]
        reasons = [
            validity.client_queueing(delivery, engine_ttft),
            validity.preemptions(int(sum(t.engine.get("num_preemptions", 0) for t in traces)), len(traces)),
            validity.warmup_trend(per_repetition(self, median_tpot), "the median TPOT"),
            self.cpu.problem(max_foreign_cores) if self.cpu else None,
            *machine.window_problems(*self.machine),
        ]
        out.extend(r for r in reasons if r)
        return out


@dataclass(frozen=True)
class TimedBatch:
    wall_s: float
    output: BatchOutput


@dataclass(frozen=True)
class OfflineRun:
    """Measured repetitions of an offline batch workload (warm-up excluded)."""

    workload: Workload
    batches: tuple[TimedBatch, ...]
    achieved_rel_ci: Mapping[str, float] = field(default_factory=dict)
    cpu: validity.CpuUsage | None = None
    #: the reference kernel timed right before and right after the measured window
    machine: tuple[Probe | None, Probe | None] = (None, None)

    def problems(self, max_foreign_cores: float = validity.MAX_FOREIGN_LOAD) -> list[str]:
        """Why these figures cannot be trusted (empty when they can); the limit as :meth:`StreamingRun.problems`'."""
        rates = [b.output.output_tokens / b.wall_s for b in self.batches if b.wall_s > 0]
        reasons = [
            validity.warmup_trend(rates, "output tokens/s"),
            self.cpu.problem(max_foreign_cores) if self.cpu else None,
            *machine.window_problems(*self.machine),
        ]
        return [r for r in reasons if r]


def relative_ci(values: Sequence[float]) -> float:
    """95 % confidence half-width of the mean, as a fraction of the mean (inf below 2 values)."""
    n = len(values)
    if n < 2:
        return math.inf
    mean = statistics.fmean(values)
    if mean == 0:
        return math.inf
    from scipy import stats

    return float(stats.t.ppf(0.975, n - 1)) * statistics.stdev(values) / math.sqrt(n) / abs(mean)


def median_tpot(rep: Sequence[StreamTrace]) -> float:
    per_request = [
        v for t in rep if t.token_times_s and (v := tpot_s(t.token_times_s[0], t.token_times_s[-1], t.output_tokens))
    ]
    return statistics.median(per_request) if per_request else math.nan


def median_ttft(rep: Sequence[StreamTrace]) -> float:
    values = [t.token_times_s[0] - t.submit_s for t in rep if t.token_times_s]
    return statistics.median(values) if values else math.nan


def median_e2e(rep: Sequence[StreamTrace]) -> float:
    values = [t.token_times_s[-1] - t.submit_s for t in rep if t.token_times_s]
    return statistics.median(values) if values else math.nan


def _high(values: list[float]) -> float:
    """The p99 of one repetition's values, as the reported p99 computes it."""
    return percentile(values, 99) if values else math.nan


def p99_ttft(rep: Sequence[StreamTrace]) -> float:
    return _high([t.token_times_s[0] - t.submit_s for t in rep if t.token_times_s])


def p99_tpot(rep: Sequence[StreamTrace]) -> float:
    return _high(
        [v for t in rep if t.token_times_s and (v := tpot_s(t.token_times_s[0], t.token_times_s[-1], t.output_tokens))]
    )


def p99_e2e(rep: Sequence[StreamTrace]) -> float:
    return _high([t.token_times_s[-1] - t.submit_s for t in rep if t.token_times_s])


def p99_itl(rep: Sequence[StreamTrace]) -> float:
    return _high([b - a for t in rep for a, b in itertools.pairwise(t.token_times_s)])


#: per-repetition statistics of every gated latency figure: adaptive repetitions (--slm-target-ci)
#: keep measuring until each one's confidence interval is tight enough
STREAMING_STATISTICS: dict[str, Callable[[Sequence[StreamTrace]], float]] = {
    "ttft_p50": median_ttft,
    "ttft_p99": p99_ttft,
    "tpot_p50": median_tpot,
    "tpot_p99": p99_tpot,
    "itl_p99": p99_itl,
    "e2e_p50": median_e2e,
    "e2e_p99": p99_e2e,
}


def per_repetition(run: StreamingRun, statistic: Callable[[Sequence[StreamTrace]], float]) -> list[float]:
    return [v for rep in run.repetitions if not math.isnan(v := statistic(rep))]


def _repeat(
    workload: Workload, once: Callable[[int], Any], statistics_: Mapping[str, Callable[[Any], float]]
) -> tuple[list[Any], dict[str, float]]:
    """``num_runs`` repetitions, then more while any statistic's CI is wider than the target."""

    def cis(results: list[Any]) -> dict[str, float]:
        return {
            name: relative_ci([v for r in results if not math.isnan(v := fn(r))]) for name, fn in statistics_.items()
        }

    results = [once(i) for i in range(workload.num_runs)]
    if workload.target_rel_ci is not None:
        cap = workload.max_runs or 10 * workload.num_runs
        while len(results) < cap and max(cis(results).values()) > workload.target_rel_ci:
            results.append(once(len(results)))
    return results, cis(results)


def run_streaming(engine: Engine, workload: Workload, prober: Prober | None = None) -> StreamingRun:
    """Stream ``workload`` ``num_warmup + num_runs`` times (more when adaptive); keep the measured
    ones. ``prober`` times the reference kernel right before and right after the measured window."""
    for _ in range(workload.num_warmup):
        engine.stream(workload.prompts(), workload.sampling)
    server = validity.server_processes_of(engine)  # looked up before the window: it reads every socket
    with machine.Bracket(prober) as kernel, validity.CpuWindow(server=server) as window:
        reps, ci = _repeat(
            workload, lambda _: tuple(engine.stream(workload.prompts(), workload.sampling)), STREAMING_STATISTICS
        )
    return StreamingRun(workload, tuple(reps), ci, window.usage, kernel.probes)


def run_offline(
    engine: Engine, workload: Workload, clock: Callable[[], float] = time.perf_counter, prober: Prober | None = None
) -> OfflineRun:
    """Generate the batch ``num_warmup + num_runs`` times, timing each measured call (``prober``:
    the reference kernel, timed right before and right after the measured window)."""
    sampling = workload.sampling
    prompts = workload.prompts()
    for _ in range(workload.num_warmup):
        engine.generate(prompts, sampling)

    def once(_: int) -> TimedBatch:
        t0 = clock()
        out = engine.generate(prompts, sampling)
        return TimedBatch(clock() - t0, out)

    server = validity.server_processes_of(engine)  # looked up before the window: it reads every socket
    with machine.Bracket(prober) as kernel, validity.CpuWindow(server=server) as window:
        batches, ci = _repeat(workload, once, {"output_tokens_per_s": lambda b: b.output.output_tokens / b.wall_s})
    return OfflineRun(workload, tuple(batches), ci, window.usage, kernel.probes)
