"""Latency from streamed token timestamps: TTFT, TPOT, ITL and end-to-end latency, for a single
stream and for ``--slm-batch-size`` concurrent streams. One streaming run per workload is shared
by the tests below (warm-up excluded, prefix caching off, fixed output length). A run the
machine, the engine or the client distorted fails every test that takes it as an invalid
measurement, with the reason (``slm_runs`` applies the run's validity: no call needed here)."""

from __future__ import annotations

import pytest

from pytest_slm.measure.latency import engine_crosscheck, latency_metrics

STREAMS = ["single", "batch"]


@pytest.mark.parametrize("streams", STREAMS)
def test_ttft(slm_runs, slm, streams):
    """Time to first token (s): p50/p90/p99/mean over requests."""
    run = slm_runs.streaming(slm.workload(streams))
    slm.extend(latency_metrics(run, "ttft"))


@pytest.mark.parametrize("streams", STREAMS)
def test_tpot(slm_runs, slm, streams):
    """Time per output token after the first (s)."""
    run = slm_runs.streaming(slm.workload(streams))
    slm.extend(latency_metrics(run, "tpot"))


@pytest.mark.parametrize("streams", STREAMS)
def test_itl(slm_runs, slm, streams):
    """Inter-token latency (s), every gap pooled over requests."""
    run = slm_runs.streaming(slm.workload(streams))
    slm.extend(latency_metrics(run, "itl"))


@pytest.mark.parametrize("streams", STREAMS)
def test_e2e_latency(slm_runs, slm, streams):
    """End-to-end request latency (s)."""
    run = slm_runs.streaming(slm.workload(streams))
    slm.extend(latency_metrics(run, "e2e"))


@pytest.mark.parametrize("streams", STREAMS)
def test_engine_timing_crosscheck(slm_runs, slm, streams):
    """Client-side TTFT and TPOT against the engine's own timestamps for the same requests.

    Independent of the client: the engine core stamps the first and last token in its own
    process (vLLM's request stats), on the same monotonic clock. The disagreement is recorded
    (``first_token_delivery_p50_s``, the ratios); a first token that reached the client late
    makes the latency figures of this workload invalid (see their tests)."""
    run = slm_runs.streaming(slm.workload(streams))
    pairs = engine_crosscheck(run)
    if not pairs:
        pytest.skip("the engine reported no per-request timestamps (engine without request stats)")
    for key, (client, engine) in sorted(pairs.items()):
        stat = key.removesuffix("_s")
        slm.record(f"engine_{stat}_p50_s", engine, unit="s", higher_is_better=False, clock="engine core")
        slm.record(
            f"{stat}_client_over_engine",
            client / engine,
            unit="1",
            higher_is_better=False,
            client_p50_s=client,
            engine_p50_s=engine,
        )
        if stat == "ttft":
            slm.record("first_token_delivery_p50_s", client - engine, unit="s", higher_is_better=False)
