"""Latency figures from streamed token timestamps: TTFT, TPOT, ITL, end-to-end.

Definitions (as in vLLM's serving benchmark):
- TTFT: first token received − request submitted.
- TPOT: (last token − first token) ÷ (output tokens − 1), per request.
- ITL: every gap between consecutive tokens of a request, pooled over requests.
- E2E: last token received − request submitted.
"""

from __future__ import annotations

import functools
import itertools
import math
import statistics
from collections.abc import Callable, Sequence

from pytest_slm.engines.base import StreamTrace, tpot_s
from pytest_slm.measure.workloads import StreamingRun
from pytest_slm.record import Metric

PERCENTILES = (50, 90, 99)
KINDS = ("ttft", "tpot", "itl", "e2e")


def ttft(t: StreamTrace) -> list[float]:
    return [t.token_times_s[0] - t.submit_s] if t.token_times_s else []


def tpot(t: StreamTrace) -> list[float]:
    ts = t.token_times_s
    value = tpot_s(ts[0], ts[-1], len(ts)) if ts else None
    return [] if value is None else [value]


def itl(t: StreamTrace) -> list[float]:
    ts = t.token_times_s
    return [b - a for a, b in itertools.pairwise(ts)]


def e2e(t: StreamTrace) -> list[float]:
    return [t.token_times_s[-1] - t.submit_s] if t.token_times_s else []


EXTRACTORS: dict[str, Callable[[StreamTrace], list[float]]] = {"ttft": ttft, "tpot": tpot, "itl": itl, "e2e": e2e}


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default method), without importing numpy."""
    if not values:
        raise ValueError("percentile of no values")
    xs = sorted(values)
    if len(xs) == 1:
        return xs[0]
    pos = (len(xs) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def latency_metrics(run: StreamingRun, kind: str) -> list[Metric]:
    """p50/p90/p99/mean of ``kind`` over all measured requests, in seconds.

    Each metric's ``samples`` are the per-repetition values of the same statistic (the
    unit of evidence for baseline comparison); ``n`` is the number of pooled values.
    """
    if kind not in EXTRACTORS:
        raise ValueError(f"unknown latency kind {kind!r}; valid: {', '.join(KINDS)}")
    extract = EXTRACTORS[kind]
    per_rep = [[v for t in rep for v in extract(t)] for rep in run.repetitions]
    pooled = [v for rep in per_rep for v in rep]
    if not pooled:
        raise ValueError(f"{kind}: the run produced no values (requests with fewer than 2 output tokens?)")
    info = {
        "workload": run.workload.describe(),
        "clock": "client perf_counter",
        "repetitions": len(run.repetitions),
        "achieved_rel_ci_tpot": _finite_or_none(run.achieved_rel_ci),
    }
    out: list[Metric] = []
    stats: dict[str, Callable[[Sequence[float]], float]] = {
        **{f"p{q}": functools.partial(percentile, q=q) for q in PERCENTILES},
        "mean": statistics.fmean,
    }
    for stat, fn in stats.items():
        out.append(
            Metric(
                name=f"{kind}_{stat}_s",
                value=fn(pooled),
                unit="s",
                higher_is_better=False,
                n=len(pooled),
                samples=tuple(fn(rep) for rep in per_rep if rep),
                info=info,
            )
        )
    return out


def _finite_or_none(x: float) -> float | None:
    return x if math.isfinite(x) else None


def engine_crosscheck(run: StreamingRun, key: str) -> tuple[float, float] | None:
    """Median of the client's and of the engine's own figure for ``key`` ("ttft_s"/"tpot_s")."""
    client_fn = ttft if key == "ttft_s" else tpot
    pairs = [(c[0], t.engine[key]) for rep in run.repetitions for t in rep if key in t.engine and (c := client_fn(t))]
    if not pairs:
        return None
    return statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs)
