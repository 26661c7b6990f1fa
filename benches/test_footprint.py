"""What it costs to have the model loaded: load time, checkpoint size, memory."""

from __future__ import annotations


def test_engine_load_time(slm_engine_facts, slm):
    """Seconds from engine construction to ready (weights, KV cache allocation, warm-up)."""
    slm.record("engine_load_s", slm_engine_facts["load_time_s"], unit="s", higher_is_better=False)


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
    slm_runs.offline(slm.offline_workload())  # peak memory means something only after real work
    slm.extend(slm_engine.memory_metrics())
