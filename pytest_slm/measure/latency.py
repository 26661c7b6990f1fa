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

from pytest_slm.engine_api import StreamTrace, tpot_s
from pytest_slm.measure import machine
from pytest_slm.measure.workloads import StreamingRun
from pytest_slm.record import Metric
from pytest_slm.stats import percentile

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


def latency_metrics(run: StreamingRun, kind: str) -> list[Metric]:
    """p50/p90/p99/mean of ``kind`` over all measured requests, in seconds.

    Each metric's ``samples`` are the per-repetition values of the same statistic; its
    ``info["se_log"]`` is the standard error of log(value) from a hierarchical bootstrap
    (resample repetitions, then requests within them), so a p99 carries the uncertainty of a
    p99 and not that of a median. ``n`` is the number of pooled values.
    """
    if kind not in EXTRACTORS:
        raise ValueError(f"unknown latency kind {kind!r}; valid: {', '.join(KINDS)}")
    extract = EXTRACTORS[kind]
    per_rep = [[v for t in rep for v in extract(t)] for rep in run.repetitions]
    pooled = [v for rep in per_rep for v in rep]
    if not pooled:
        raise ValueError(f"{kind}: the run produced no values (requests with fewer than 2 output tokens?)")
    info = run_info(run)
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
                info={**info, "se_log": hierarchical_se_log([r for r in per_rep if r], stat)},
            )
        )
    return out


def run_info(run: StreamingRun) -> dict[str, object]:
    """What every figure of a streaming run carries: its workload, clock, size and machine load."""
    cpu = run.cpu
    return {
        "workload": run.workload.describe(),
        "clock": "client perf_counter",
        "repetitions": len(run.repetitions),
        "achieved_rel_ci": {k: _finite_or_none(v) for k, v in run.achieved_rel_ci.items()},
        "machine": machine.describe(*run.machine),
        # foreign load, which processes counted as ours, and where CPU contention was read
        "cpu": None if cpu is None else cpu.describe(),
    }


def hierarchical_se_log(per_rep: Sequence[Sequence[float]], stat: str, iterations: int = 200) -> float | None:
    """Standard error of log(statistic) over the pooled values, by a two-level bootstrap:
    repetitions with replacement, then values within each chosen repetition with replacement."""
    if len(per_rep) < 2:
        return None
    import numpy as np

    rng = np.random.default_rng(0)
    arrays = [np.asarray(r, dtype=float) for r in per_rep]
    q = None if stat == "mean" else float(stat.removeprefix("p"))
    boots = np.empty(iterations)
    for i in range(iterations):
        chosen = [arrays[j] for j in rng.integers(0, len(arrays), len(arrays))]
        pooled = np.concatenate([a[rng.integers(0, a.size, a.size)] for a in chosen])
        boots[i] = pooled.mean() if q is None else np.percentile(pooled, q)
    if np.any(boots <= 0):
        return None
    return float(np.std(np.log(boots), ddof=1))


def _finite_or_none(x: float) -> float | None:
    return x if math.isfinite(x) else None


def engine_crosscheck(run: StreamingRun) -> dict[str, tuple[float, float]]:
    """Client figure against the engine's own, medians over the same requests, by statistic.

    ``ttft_s``: the client's TTFT against the moment the engine core stamped the first token
    (measured from the same submission, on the shared monotonic clock): the difference is the
    time the token spent on its way to the client. ``tpot_s``: the client's TPOT against the
    engine core's (its first and last token stamps). Statistics the engine did not report are
    left out."""
    traces = [t for rep in run.repetitions for t in rep if t.token_times_s]
    out: dict[str, tuple[float, float]] = {}
    ttft_pairs = [(ttft(t)[0], t.engine["first_token_ts"] - t.submit_s) for t in traces if "first_token_ts" in t.engine]
    if ttft_pairs:
        out["ttft_s"] = (statistics.median(p[0] for p in ttft_pairs), statistics.median(p[1] for p in ttft_pairs))
    tpot_pairs = [(c[0], t.engine["tpot_s"]) for t in traces if "tpot_s" in t.engine and (c := tpot(t))]
    if tpot_pairs:
        out["tpot_s"] = (statistics.median(p[0] for p in tpot_pairs), statistics.median(p[1] for p in tpot_pairs))
    return out
