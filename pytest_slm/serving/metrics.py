"""Metrics of one serving level: throughput, latency percentiles, goodput, the client's self-check,
the server's own counters, and the per-request records. Pytest-free.

Latency figures use the definitions of :mod:`pytest_slm.measure.latency` (TTFT, TPOT, ITL, E2E on
the client clock). A level is one run, so a metric's ``samples`` are the same statistic over
consecutive blocks of requests (batch means): the unit of evidence the baseline gate compares.
"""

from __future__ import annotations

import functools
import statistics
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pytest_slm.measure import machine
from pytest_slm.measure.latency import EXTRACTORS
from pytest_slm.record import Metric
from pytest_slm.serving.goodput import Attainment, attainment
from pytest_slm.serving.load import ServedRequest, ServingRun
from pytest_slm.slo import SLO
from pytest_slm.stats import percentile

#: blocks of consecutive requests whose statistics are a metric's samples
BLOCKS = 5
#: default client margin: the run is invalid when the event loop's p99 lag or the p99 send-time skew
#: exceeds it (a late client delays every timestamp it takes by about that much)
DEFAULT_CLIENT_MARGIN_S = 0.010


def figures(req: ServedRequest) -> dict[str, float | None]:
    """TTFT, TPOT and E2E (s) of one completed request, with its token counts and send skew."""
    t = req.trace
    assert t is not None
    one = {k: (v[0] if (v := EXTRACTORS[k](t)) else None) for k in ("ttft", "tpot", "e2e")}
    return {
        **one,
        "prompt_tokens": float(t.prompt_tokens),
        "output_tokens": float(t.output_tokens),
        "send_skew": req.send_skew_s,
    }


def per_request_columns(run: ServingRun) -> dict[str, list[Any]]:
    """Compact columnar per-request records (completed requests, in send order) for results.json."""
    cols: dict[str, list[Any]] = {
        k: [] for k in ("index", "prompt_tokens", "output_tokens", "ttft_s", "tpot_s", "e2e_s")
    }
    for req in sorted(run.completed, key=lambda r: r.trace.submit_s if r.trace else 0.0):
        f = figures(req)
        cols["index"].append(req.index)
        cols["prompt_tokens"].append(int(f["prompt_tokens"] or 0))
        cols["output_tokens"].append(int(f["output_tokens"] or 0))
        for key in ("ttft", "tpot", "e2e"):
            value = f[key]
            cols[f"{key}_s"].append(None if value is None else round(value, 6))
    return cols


def _blocks(values: Sequence[float], fn: Callable[[Sequence[float]], float]) -> tuple[float, ...]:
    if len(values) < 2 * BLOCKS:
        return ()
    size = len(values) // BLOCKS
    return tuple(fn(values[i * size : (i + 1) * size]) for i in range(BLOCKS))


def latency_level_metrics(run: ServingRun, info: Mapping[str, Any]) -> list[Metric]:
    """p50/p90/p99/mean of TTFT, TPOT, ITL and E2E over the level's completed requests."""
    done = sorted(run.completed, key=lambda r: r.trace.submit_s if r.trace else 0.0)
    stats: dict[str, Callable[[Sequence[float]], float]] = {
        **{f"p{q}": functools.partial(percentile, q=q) for q in (50, 90, 99)},
        "mean": statistics.fmean,
    }
    out: list[Metric] = []
    for kind in ("ttft", "tpot", "itl", "e2e"):
        values = [v for r in done if r.trace is not None for v in EXTRACTORS[kind](r.trace)]
        if not values:
            continue
        for stat, fn in stats.items():
            out.append(
                Metric(
                    f"{kind}_{stat}_s",
                    fn(values),
                    "s",
                    higher_is_better=False,
                    n=len(values),
                    samples=_blocks(values, fn),
                    info=dict(info),
                )
            )
    return out


def throughput_level_metrics(run: ServingRun, info: Mapping[str, Any]) -> list[Metric]:
    """Completed requests/s and output tokens/s over the level's wall time (first send → last token)."""
    done = run.completed
    wall = run.wall_s
    if wall <= 0 or not done:
        return []
    out_tokens = sum(r.trace.output_tokens for r in done if r.trace)
    prompt_tokens = sum(r.trace.prompt_tokens for r in done if r.trace)
    per_request = per_request_columns(run)
    return [
        Metric(
            "requests_per_s",
            len(done) / wall,
            "request/s",
            higher_is_better=True,
            n=len(done),
            info={**info, "wall_s": wall, "per_request": per_request},
        ),
        Metric(
            "output_tokens_per_s",
            out_tokens / wall,
            "token/s",
            higher_is_better=True,
            n=len(done),
            info={**info, "wall_s": wall, "output_tokens": out_tokens, "prompt_tokens": prompt_tokens},
        ),
    ]


def attainments(run: ServingRun, slos: Sequence[SLO]) -> list[Attainment]:
    per_request = [figures(r) for r in run.completed]
    return [attainment(slo, per_request, len(run.failed), run.wall_s) for slo in slos]


def goodput_metrics(run: ServingRun, slos: Sequence[SLO], info: Mapping[str, Any]) -> list[Metric]:
    """Goodput (requests/s within the SLO) per SLO, with whether the level met it at the percentile."""
    out = []
    for a in attainments(run, slos):
        out.append(
            Metric(
                f"goodput_{a.slo.key}_rps",
                a.goodput_rps,
                "request/s",
                higher_is_better=True,
                n=a.total,
                info={
                    **info,
                    "workload": {**info.get("workload", {}), **a.slo.describe()},
                    "good_requests": a.good,
                    "good_fraction": a.good_fraction,
                    "slo_met": a.met,
                    "at_percentile_s": a.at_percentile,
                },
            )
        )
    return out


def client_check(
    run: ServingRun, margin_s: float = DEFAULT_CLIENT_MARGIN_S, max_foreign_load: float | None = None
) -> tuple[list[Metric], list[str]]:
    """The client's own distortion (event-loop lag, send-time skew) as metrics, and the reasons the
    run is invalid: lag or skew at p99 beyond ``margin_s`` means the client, not the server, was late;
    other processes busy on the machine (beyond ``max_foreign_load``, a share of its cores), or a
    machine whose reference kernel ran at another speed after the run than before it, mean neither
    can be trusted."""
    metrics: list[Metric] = []
    reasons: list[str] = []
    # the window's CPU reading (foreign load, which processes counted as ours, contention) rides on the
    # client's own figures: the serving rows say what the machine did while the client was checked
    cpu = {"cpu": run.cpu.describe()} if run.cpu is not None else {}
    if run.cpu is not None and max_foreign_load is not None and (problem := run.cpu.problem(max_foreign_load)):
        reasons.append(problem)
    reasons.extend(machine.window_problems(*run.machine))
    lag = run.loop_lag
    if lag.get("p99_s") is not None:
        metrics.append(
            Metric(
                "client_loop_lag_p99_s",
                float(lag["p99_s"]),
                "s",
                higher_is_better=False,
                n=int(lag.get("ticks") or 0),
                info={"loop_lag": lag, "margin_s": margin_s, **cpu},
            )
        )
        if lag["p99_s"] > margin_s:
            reasons.append(
                f"client event loop saturated: p99 lag {lag['p99_s'] * 1e3:.1f} ms > margin {margin_s * 1e3:.1f} ms "
                f"(max {lag['max_s'] * 1e3:.1f} ms over {lag['ticks']} ticks)"
            )
    skews = [s for r in run.requests if (s := r.send_skew_s) is not None]
    if skews:
        p99 = percentile(skews, 99)
        metrics.append(
            Metric(
                "send_skew_p99_s",
                p99,
                "s",
                higher_is_better=False,
                n=len(skews),
                info={"max_s": max(skews), "margin_s": margin_s, "skew_is_client": run.skew_is_client, **cpu},
            )
        )
        if run.skew_is_client and p99 > margin_s:
            reasons.append(
                f"client sent requests late: p99 send-time skew {p99 * 1e3:.1f} ms > margin {margin_s * 1e3:.1f} ms"
            )
    return metrics, reasons


def server_crosscheck_metrics(run: ServingRun) -> list[Metric]:
    """The server's own counters over the run (Prometheus deltas) against the client's figures:
    mean TTFT (histogram sum ÷ count) and token totals; the ratio is recorded, not asserted."""
    sm = run.server_metrics
    if not sm:
        return []
    out: list[Metric] = []
    done = [r for r in run.completed if r.trace is not None]
    client_ttft = [v for r in done if r.trace for v in EXTRACTORS["ttft"](r.trace)]
    if sm.get("ttft_mean_s") and client_ttft:
        client_mean = statistics.fmean(client_ttft)
        out.append(
            Metric(
                "server_ttft_mean_s",
                float(sm["ttft_mean_s"]),
                "s",
                higher_is_better=False,
                n=int(sm.get("ttft_count") or 0),
                info={"clock": "server (Prometheus histogram delta)", "client_ttft_mean_s": client_mean},
            )
        )
        out.append(
            Metric(
                "ttft_client_over_server",
                client_mean / float(sm["ttft_mean_s"]),
                "1",
                higher_is_better=False,
                n=len(client_ttft),
                info={"server": sm},
            )
        )
    for key, client_total in (
        ("generation_tokens", sum(r.trace.output_tokens for r in done if r.trace)),
        ("prompt_tokens", sum(r.trace.prompt_tokens for r in done if r.trace)),
    ):
        server_total = sm.get(key)
        if server_total is None or not client_total:
            continue
        out.append(
            Metric(
                f"server_{key}_over_client",
                float(server_total) / client_total,
                "1",
                higher_is_better=False,
                n=len(done),
                info={"server_total": server_total, "client_total": client_total},
            )
        )
    return out
