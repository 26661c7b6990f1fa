"""How close single-stream decode is to what the memory bandwidth allows (the decode roofline).

The machine's bandwidth is measured once per fingerprint (STREAM copy/triad in torch, cached under
``--slm-cache-dir``). Per model × precision: bytes moved per output token (weights at their stored
precision plus the KV cache read at the measured context), the roofline TPOT, and the model
bandwidth utilization MBU = bytes per token ÷ TPOT ÷ bandwidth, from the TPOT of the single-stream
latency run the latency tests share. MBU above 1 is an invalid measurement, never a result.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from pytest_slm.measure.latency import latency_metrics
from pytest_slm.measure.roofline import decode_bytes, mbu


def test_memory_bandwidth(slm_memory_bandwidth, slm):
    """Achievable memory bandwidth (B/s) of the device the engines run on: the roofline's ceiling."""
    bw = slm_memory_bandwidth
    slm.record(
        "memory_bandwidth_bytes_per_s",
        bw.bytes_per_s,
        unit="B/s",
        higher_is_better=True,
        copy_bytes_per_s=bw.copy_bytes_per_s,
        triad_bytes_per_s=bw.triad_bytes_per_s,
        array_bytes=bw.array_bytes,
        llc_bytes=bw.llc_bytes,
        device=bw.device,
        method=bw.method,
        cached=bw.cached,
        measured_at=bw.measured_at,
    )


def test_decode_roofline(slm_memory_bandwidth, slm_runs, slm_engine_facts, slm):
    """Bytes per output token, roofline TPOT and MBU of single-stream decode (per-repetition MBU as samples)."""
    run = slm_runs.streaming(slm.workload("single"))
    tpot = next(m for m in latency_metrics(run, "tpot") if m.name == "tpot_p50_s")
    traces = [t for rep in run.repetitions for t in rep]
    bytes_ = decode_bytes(
        Path(slm_engine_facts["checkpoint"]),
        prompt_tokens=statistics.fmean(t.prompt_tokens for t in traces),
        output_tokens=statistics.fmean(t.output_tokens for t in traces),
        kv_bytes_per_position_reported=slm_engine_facts.get("kv_cache_bytes_per_token"),
        kv_cache_dtype=slm.spec.kv_cache_dtype,
        model_dtype=str(slm_engine_facts.get("dtype") or "bfloat16"),
    )
    bw = slm_memory_bandwidth.bytes_per_s
    info = {
        "weight_bytes": bytes_.weight_bytes,
        "kv_bytes": bytes_.kv_bytes,
        "kv_bytes_per_position": bytes_.kv_bytes_per_position,
        "mean_context_tokens": bytes_.mean_context_tokens,
        "tied_embeddings": bytes_.tied_embeddings,
        "embedding_bytes_excluded": bytes_.embedding_bytes_excluded,
        "bandwidth_bytes_per_s": bw,
        "tpot_p50_s": tpot.value,
        "workload": run.workload.describe(),
    }
    slm.record("decode_bytes_per_token", bytes_.total, unit="B/token", higher_is_better=False, **info)
    slm.record("roofline_tpot_s", bytes_.total / bw, unit="s", higher_is_better=False, **info)
    value = mbu(bytes_.total, tpot.value, bw)
    slm.record(
        "mbu",
        value,
        unit="1",
        higher_is_better=True,
        n=tpot.n,
        samples=[mbu(bytes_.total, t, bw) for t in tpot.samples],
        **info,
    )
    if value > 1:
        slm.invalid(
            f"MBU {value:.3f} > 1: {bytes_.total:.4g} B/token at TPOT {tpot.value:.4g} s would need "
            f"{bytes_.total / tpot.value:.4g} B/s, above the measured {bw:.4g} B/s",
        )
