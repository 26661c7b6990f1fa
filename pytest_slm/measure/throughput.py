"""Throughput figures from timed offline batches."""

from __future__ import annotations

import math
import statistics

from pytest_slm.measure import machine
from pytest_slm.measure.workloads import OfflineRun
from pytest_slm.record import Metric


def throughput_metrics(run: OfflineRun) -> list[Metric]:
    """Output tokens/s, total tokens/s and requests/s: the ratio of totals over all measured
    batches (not the mean of ratios), with the per-batch ratios as ``samples``."""
    wall = sum(b.wall_s for b in run.batches)
    if wall <= 0:
        raise ValueError("offline run took no time; the clock is broken")
    cpu = run.cpu
    info = {
        "workload": run.workload.describe(),
        "batches": len(run.batches),
        "achieved_rel_ci": {k: (v if math.isfinite(v) else None) for k, v in run.achieved_rel_ci.items()},
        "machine": machine.describe(*run.machine),
        # foreign load, which processes counted as ours, and where CPU contention was read
        "cpu": None if cpu is None else cpu.describe(),
    }

    def metric(name: str, unit: str, attr: str) -> Metric:
        total = sum(getattr(b.output, attr) for b in run.batches)
        samples = tuple(getattr(b.output, attr) / b.wall_s for b in run.batches)
        return Metric(name, total / wall, unit, higher_is_better=True, n=len(samples), samples=samples, info=info)

    out = [
        metric("output_tokens_per_s", "token/s", "output_tokens"),
        metric("requests_per_s", "request/s", "requests"),
    ]
    total_tokens = tuple((b.output.output_tokens + b.output.prompt_tokens) / b.wall_s for b in run.batches)
    out.append(
        Metric(
            "total_tokens_per_s",
            sum(b.output.output_tokens + b.output.prompt_tokens for b in run.batches) / wall,
            "token/s",
            higher_is_better=True,
            n=len(total_tokens),
            samples=total_tokens,
            info=info,
        )
    )
    out.append(
        Metric(
            "batch_latency_p50_s",
            statistics.median(b.wall_s for b in run.batches),
            "s",
            higher_is_better=False,
            n=len(run.batches),
            samples=tuple(b.wall_s for b in run.batches),
            info=info,
        )
    )
    return out
