"""Latency from streamed token timestamps: TTFT, TPOT, ITL and end-to-end latency, for a single
stream and for ``--slm-batch-size`` concurrent streams. One streaming run per workload is shared by
the tests below (warm-up excluded, prefix caching off, fixed output length)."""

from __future__ import annotations

import pytest

from pytest_slm.measure.latency import engine_crosscheck, latency_metrics

STREAMS = ["single", "batch"]

#: Client and engine clocks must agree on the same requests within this much (relative), or
#: within CROSSCHECK_ABS_S: a larger gap means the harness, not the model, is being measured.
CROSSCHECK_REL = 0.10
CROSSCHECK_ABS_S = 0.005


@pytest.mark.parametrize("streams", STREAMS)
def test_ttft(slm_runs, slm, streams):
    """Time to first token (s): p50/p90/p99/mean over requests."""
    slm.extend(latency_metrics(slm_runs.streaming(slm.workload(streams)), "ttft"))


@pytest.mark.parametrize("streams", STREAMS)
def test_tpot(slm_runs, slm, streams):
    """Time per output token after the first (s)."""
    slm.extend(latency_metrics(slm_runs.streaming(slm.workload(streams)), "tpot"))


@pytest.mark.parametrize("streams", STREAMS)
def test_itl(slm_runs, slm, streams):
    """Inter-token latency (s), every gap pooled over requests."""
    slm.extend(latency_metrics(slm_runs.streaming(slm.workload(streams)), "itl"))


@pytest.mark.parametrize("streams", STREAMS)
def test_e2e_latency(slm_runs, slm, streams):
    """End-to-end request latency (s)."""
    slm.extend(latency_metrics(slm_runs.streaming(slm.workload(streams)), "e2e"))


@pytest.mark.parametrize("streams", STREAMS)
def test_engine_timing_crosscheck(slm_runs, slm, streams):
    """Client-side TTFT/TPOT against the engine's own per-request metrics on the same requests."""
    run = slm_runs.streaming(slm.workload(streams))
    problems = []
    for key in ("ttft_s", "tpot_s"):
        pair = engine_crosscheck(run, key)
        if pair is None:
            pytest.skip(f"the engine reported no per-request {key} (engine without per-request metrics)")
        client, engine = pair
        stat = key.removesuffix("_s")
        slm.record(f"engine_{stat}_p50_s", engine, unit="s", higher_is_better=False, clock="engine")
        slm.record(
            f"{stat}_client_over_engine",
            client / engine,
            unit="1",
            higher_is_better=False,
            client_p50_s=client,
            engine_p50_s=engine,
        )
        if abs(client - engine) > max(CROSSCHECK_ABS_S, CROSSCHECK_REL * engine):
            problems.append(f"{stat}: client p50 {client:.4f} s vs engine p50 {engine:.4f} s")
    assert not problems, "client and engine timings disagree beyond tolerance: " + "; ".join(problems)
