"""Serving under load: one test per load level (``--slm-concurrency 1 8``, ``--slm-request-rate 2 inf``),
then the saturation point of each sweep against each SLO (``--slm-slo``).

Works on any engine: through the server with ``--slm-engine openai`` (pytest-slm starts vLLM's
OpenAI server, or measures ``--slm-endpoint``), or in process (the vLLM engine is stepped with
requests joining between steps). Prompts come from ``--slm-prompt-set`` (default: the shipped set),
distinct within a level and the same for every level.

On request (marker ``slm_serving``): a run that sets ``--slm-concurrency`` or ``--slm-request-rate``, or
the full profile; the quick default measures time to first token and per token with the latency tests.
"""

from __future__ import annotations

import pytest

from pytest_slm.measure import machine
from pytest_slm.serving.goodput import saturation_point
from pytest_slm.serving.metrics import (
    attainments,
    client_check,
    goodput_metrics,
    latency_level_metrics,
    server_crosscheck_metrics,
    throughput_level_metrics,
)

pytestmark = pytest.mark.slm_serving


def _info(slm_serving, run):
    sources = sorted({r.token_count_source for r in run.completed})
    return {
        "workload": slm_serving.workload(run.load),
        "client": run.client,
        "token_count_source": ",".join(sources),
        "requests_sent": len(run.requests),
        "requests_planned": run.planned,
        "machine": machine.describe(*run.machine),
    }


def test_serving(slm_serving, slm_load, slm):
    """Throughput, TTFT/TPOT/ITL/E2E percentiles, goodput per SLO, the client's self-check and the
    server's own counters for one load level; per-request records in ``requests_per_s``'s info."""
    run = slm_serving.run(slm_load)
    info = _info(slm_serving, run)
    slm.extend(throughput_level_metrics(run, info))
    slm.extend(latency_level_metrics(run, info))
    slm.extend(goodput_metrics(run, slm_serving.slos(), info))
    slm.extend(server_crosscheck_metrics(run))
    # the level's validity (these checks' reasons, labelled with the level) applies through slm_serving
    checks, _ = client_check(run, slm.settings.client_margin_s, slm.settings.max_foreign_load)
    slm.extend(checks)
    if run.failed:
        first = run.failed[0].error
        pytest.fail(f"{len(run.failed)} of {len(run.requests)} requests failed; first: {first}", pytrace=False)
    if len(run.requests) < run.planned:
        slm.record(
            "requests_cut_by_time_budget", run.planned - len(run.requests), unit="request", higher_is_better=False
        )


@pytest.mark.parametrize("kind", ["concurrency", "rate"])
def test_saturation_point(slm_serving, slm_slo, kind, slm):
    """The highest load level of the sweep that meets the SLO at its percentile (MLPerf's rule), with
    the goodput there. Levels run here if their own tests were deselected."""
    levels = [load for load in slm_serving.levels() if load.kind == kind]
    if not levels:
        option = "--slm-concurrency" if kind == "concurrency" else "--slm-request-rate"
        pytest.skip(f"no {kind} levels in this sweep ({option})")
    outcome = []
    for load in levels:  # each level's validity, labelled with it, applies through slm_serving
        run = slm_serving.run(load)
        (att,) = attainments(run, [slm_slo])
        outcome.append((load, run, att))
    point = saturation_point([(load.value, att.met) for load, _, att in outcome])
    reached = any(not att.met for _, _, att in outcome)
    best = next(((load, run, att) for load, run, att in outcome if load.value == point), None)
    value = 0.0
    if best is not None:
        load, run, att = best
        # an infinite rate that still meets the SLO: the achieved request rate is the finite figure
        value = load.value if load.value != float("inf") else len(run.completed) / run.wall_s
    unit = "request" if kind == "concurrency" else "request/s"
    workload = {**slm_serving.workload(levels[0]), **slm_slo.describe()}
    for key in ("load_value", "prompt_requests", "prompt_distinct", "prompt_cycled"):
        workload.pop(key, None)
    workload["load_levels"] = " ".join(load.id for load in levels)
    slm.record(
        f"saturation_{kind}",
        value,
        unit=unit,
        higher_is_better=True,
        workload=workload,
        saturated=reached,
        note=None if reached else "every level met the SLO: the saturation point is at least this",
        levels={
            load.id: {"met": att.met, "goodput_rps": att.goodput_rps, **att.at_percentile} for load, _, att in outcome
        },
    )
    if best is not None:
        slm.record(
            f"saturation_{kind}_goodput_rps",
            best[2].goodput_rps,
            unit="request/s",
            higher_is_better=True,
            workload=workload,
        )
