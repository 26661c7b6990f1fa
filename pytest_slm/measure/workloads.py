"""Workloads: warm-up, then measured repetitions of a fixed request shape on an engine.

A *repetition* is the unit of evidence baselines compare: one request for single-stream
latency, ``batch_size`` concurrent requests for concurrent latency, one offline batch for
throughput. Warm-up repetitions run first and are discarded.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pytest_slm.engines.base import BatchOutput, Engine, SamplingSpec, StreamTrace


@dataclass(frozen=True)
class Workload:
    """The request shape: how many concurrent requests, of what prompt, for how many tokens."""

    concurrency: int
    prompt: str
    max_new_tokens: int
    num_warmup: int
    num_runs: int

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
        }


@dataclass(frozen=True)
class StreamingRun:
    """Measured repetitions of a streaming workload (warm-up excluded)."""

    workload: Workload
    repetitions: tuple[tuple[StreamTrace, ...], ...]


@dataclass(frozen=True)
class TimedBatch:
    wall_s: float
    output: BatchOutput


@dataclass(frozen=True)
class OfflineRun:
    """Measured repetitions of an offline batch workload (warm-up excluded)."""

    workload: Workload
    batches: tuple[TimedBatch, ...]


def run_streaming(engine: Engine, workload: Workload) -> StreamingRun:
    """Stream ``workload`` ``num_warmup + num_runs`` times; keep the measured ones."""
    for _ in range(workload.num_warmup):
        engine.stream(workload.prompts(), workload.sampling)
    reps = tuple(tuple(engine.stream(workload.prompts(), workload.sampling)) for _ in range(workload.num_runs))
    return StreamingRun(workload, reps)


def run_offline(engine: Engine, workload: Workload, clock: Callable[[], float] = time.perf_counter) -> OfflineRun:
    """Generate the batch ``num_warmup + num_runs`` times, timing each measured call."""
    prompts, sampling = workload.prompts(), workload.sampling
    for _ in range(workload.num_warmup):
        engine.generate(prompts, sampling)
    batches = []
    for _ in range(workload.num_runs):
        t0 = clock()
        out = engine.generate(prompts, sampling)
        batches.append(TimedBatch(clock() - t0, out))
    return OfflineRun(workload, tuple(batches))
