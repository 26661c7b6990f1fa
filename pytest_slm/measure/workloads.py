"""Workloads: warm-up, then measured repetitions of a fixed request shape on an engine.

A *repetition* is the unit of evidence baselines compare: one request for single-stream
latency, ``batch_size`` concurrent requests for concurrent latency, one offline batch for
throughput. Warm-up repetitions run first and are discarded.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pytest_slm.engines.base import BatchOutput, Engine, SamplingSpec, StreamTrace, tpot_s


@dataclass(frozen=True)
class Workload:
    """The request shape: how many concurrent requests, of what prompt, for how many tokens."""

    concurrency: int
    prompt: str
    max_new_tokens: int
    num_warmup: int
    num_runs: int
    #: adaptive repetitions: keep going past num_runs until the 95 % CI half-width of the gated
    #: statistic is within this fraction of its mean, or max_runs is reached (None: fixed num_runs)
    target_rel_ci: float | None = None
    max_runs: int | None = None

    @property
    def sampling(self) -> SamplingSpec:
        return SamplingSpec(max_new_tokens=self.max_new_tokens)

    def prompts(self) -> list[str]:
        return [self.prompt] * self.concurrency

    def describe(self) -> dict[str, Any]:
        return {
            "concurrency": self.concurrency,
            "max_new_tokens": self.max_new_tokens,
            "num_warmup": self.num_warmup,
            "num_runs": self.num_runs,
            "target_rel_ci": self.target_rel_ci,
            "max_runs": self.max_runs,
        }


@dataclass(frozen=True)
class StreamingRun:
    """Measured repetitions of a streaming workload (warm-up excluded)."""

    workload: Workload
    repetitions: tuple[tuple[StreamTrace, ...], ...]
    achieved_rel_ci: float = math.inf  # 95 % CI half-width of the per-repetition median TPOT


@dataclass(frozen=True)
class TimedBatch:
    wall_s: float
    output: BatchOutput


@dataclass(frozen=True)
class OfflineRun:
    """Measured repetitions of an offline batch workload (warm-up excluded)."""

    workload: Workload
    batches: tuple[TimedBatch, ...]
    achieved_rel_ci: float = math.inf  # 95 % CI half-width of the per-batch output tokens/s


def relative_ci(values: Sequence[float]) -> float:
    """95 % confidence half-width of the mean, as a fraction of the mean (inf below 2 values)."""
    n = len(values)
    if n < 2:
        return math.inf
    mean = statistics.fmean(values)
    if mean == 0:
        return math.inf
    # t quantiles for 95 %, two-sided; beyond 30 degrees of freedom the normal value is close enough
    t = _T975[n - 2] if n - 2 < len(_T975) else 1.96
    return t * statistics.stdev(values) / math.sqrt(n) / abs(mean)


_T975 = (
    12.71,
    4.30,
    3.18,
    2.78,
    2.57,
    2.45,
    2.36,
    2.31,
    2.26,
    2.23,
    2.20,
    2.18,
    2.16,
    2.14,
    2.13,
    2.12,
    2.11,
    2.10,
    2.09,
    2.09,
    2.08,
    2.07,
    2.07,
    2.06,
    2.06,
    2.06,
    2.05,
    2.05,
    2.05,
)


def _repeat(workload: Workload, once: Callable[[], Any], statistic: Callable[[Any], float]) -> tuple[list[Any], float]:
    """``num_runs`` repetitions, then more while the CI of ``statistic`` is wider than the target."""
    results = [once() for _ in range(workload.num_runs)]
    if workload.target_rel_ci is not None:
        cap = workload.max_runs or 10 * workload.num_runs
        while len(results) < cap and relative_ci([statistic(r) for r in results]) > workload.target_rel_ci:
            results.append(once())
    return results, relative_ci([statistic(r) for r in results])


def _median_tpot(rep: Sequence[StreamTrace]) -> float:
    per_request = [
        v for t in rep if t.token_times_s and (v := tpot_s(t.token_times_s[0], t.token_times_s[-1], t.output_tokens))
    ]
    return statistics.median(per_request) if per_request else math.nan


def run_streaming(engine: Engine, workload: Workload) -> StreamingRun:
    """Stream ``workload`` ``num_warmup + num_runs`` times (more when adaptive); keep the measured ones.

    The adaptive statistic is the per-repetition median TPOT."""
    for _ in range(workload.num_warmup):
        engine.stream(workload.prompts(), workload.sampling)
    reps, ci = _repeat(workload, lambda: tuple(engine.stream(workload.prompts(), workload.sampling)), _median_tpot)
    return StreamingRun(workload, tuple(reps), ci)


def run_offline(engine: Engine, workload: Workload, clock: Callable[[], float] = time.perf_counter) -> OfflineRun:
    """Generate the batch ``num_warmup + num_runs`` times, timing each measured call."""
    prompts, sampling = workload.prompts(), workload.sampling
    for _ in range(workload.num_warmup):
        engine.generate(prompts, sampling)

    def once() -> TimedBatch:
        t0 = clock()
        out = engine.generate(prompts, sampling)
        return TimedBatch(clock() - t0, out)

    batches, ci = _repeat(workload, once, lambda b: b.output.output_tokens / b.wall_s)
    return OfflineRun(workload, tuple(batches), ci)
