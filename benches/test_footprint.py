"""What it costs to have the model loaded: load time, checkpoint size, memory."""

from __future__ import annotations

import pytest


def test_engine_load_time(slm_engine_facts, slm):
    """Seconds from engine construction to ready, and where they went where the engine tells (vLLM):
    ``engine_load_start_s`` (the engine's processes started, vLLM imported in them), ``engine_load_weights_s``,
    ``engine_load_after_weights_s`` (KV cache, profiling, compilation or warm-up) and ``engine_load_compile_s``.
    The compile cache's state (off in eager mode, cold, warm) is in the workload, so a cold start is never
    compared with a warm one."""
    parts = slm_engine_facts.get("load_breakdown") or {}
    workload = {"compile_cache": parts.get("compile_cache", "unknown")}
    load_s = slm_engine_facts["load_time_s"]
    slm.record("engine_load_s", load_s, unit="s", higher_is_better=False, workload=workload, breakdown=parts)
    for part in ("start_s", "weights_s", "after_weights_s", "compile_s"):
        if part in parts:
            slm.record(f"engine_load_{part}", parts[part], unit="s", higher_is_better=False, workload=workload)


def test_checkpoint_size(slm_engine_facts, slm):
    """Bytes on disk of the checkpoint the engine serves."""
    slm.record(
        "checkpoint_bytes",
        slm_engine_facts["checkpoint_bytes"],
        unit="B",
        higher_is_better=False,
        checkpoint_sha256=slm_engine_facts["checkpoint_sha256"],
    )


def test_memory(slm_engine, slm_runs, slm):
    """Memory after the engine has served the batch workload: peak RSS on CPU; weights, KV cache
    and peak allocated on CUDA (not the 'used' figure vLLM preallocates)."""
    # peak memory means something only after real work; its figures are not timings, so the batch
    # window's validity (a busy machine, a kernel changing speed) is not theirs
    slm_runs.offline(slm.offline_workload(), inherit_validity=False)
    slm.extend(slm_engine.memory_metrics())


def test_kv_cache_capacity(slm_engine_facts, slm):
    """The KV cache the engine allocated, per KV-cache dtype: tokens it holds, bytes per token position
    (all layers), and the engine's own maximum concurrency of requests at ``max_model_len``."""
    facts = slm_engine_facts
    if "kv_cache_max_concurrency" not in facts:
        pytest.skip(f"the {facts.get('engine', 'current')} engine reports no KV-cache layout")
    info = {
        "kv_cache_dtype": facts.get("kv_cache_dtype"),
        "blocks": facts.get("kv_cache_blocks"),
        "block_size": facts.get("kv_cache_block_size"),
        "max_model_len": facts.get("max_model_len"),
    }
    slm.record("kv_cache_tokens", facts["kv_cache_tokens"], unit="token", higher_is_better=True, **info)
    slm.record("kv_cache_bytes_per_token", facts["kv_cache_bytes_per_token"], unit="B/token", higher_is_better=False)
    slm.record(
        "kv_cache_max_concurrency",
        facts["kv_cache_max_concurrency"],
        unit="request",
        higher_is_better=True,
        note="vLLM's maximum concurrency for requests of max_model_len tokens (KV blocks ÷ blocks per request)",
        **info,
    )
