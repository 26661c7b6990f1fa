"""The vLLM backend's facts and gating wiring, without vLLM: memory figures from a worker report,
and the shape rule reached from the engine class with a checkpoint's config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_slm.devices import DeviceChoice, Gpu
from pytest_slm.engines.vllm import engine as vllm_engine
from pytest_slm.engines.vllm import facts as vllm_facts
from pytest_slm.precisions import get_precision


def test_cuda_memory_figures_exclude_the_kv_pool_and_report_reserved() -> None:
    worker = {
        "kv_cache_bytes": 6_000,
        "weights_loaded_bytes": 2_000,
        "cuda_peak_allocated_bytes": 9_000,
        "cuda_peak_reserved_bytes": 12_000,
    }
    m = {x.name: x for x in vllm_facts.memory_metrics(worker, on_cuda=True)}
    assert m["cuda_peak_allocated_excl_kv_bytes"].value == 3_000
    assert m["cuda_peak_reserved_bytes"].value == 12_000 and m["weights_bytes"].value == 2_000
    assert all(x.unit == "B" and not x.higher_is_better for x in m.values())
    assert "peak_rss_bytes" not in m  # CPU only: no StopIteration-style surprises for CUDA readers


def test_engine_gating_reads_the_device_choice_and_the_checkpoint_shapes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "config.json").write_text(
        json.dumps({"hidden_size": 576, "intermediate_size": 1536, "num_attention_heads": 9, "num_key_value_heads": 3})
    )
    h100 = DeviceChoice("cuda", "test", Gpu(0, "GPU-x", "NVIDIA H100", (9, 0)))
    t4 = DeviceChoice("cuda", "test", Gpu(0, "GPU-y", "Tesla T4", (7, 5)))
    cpu = DeviceChoice("cpu", "test")
    monkeypatch.setattr(vllm_engine, "marlin_pads_misfit_layers", lambda: False)
    reason = vllm_engine.VLLMEngine.unsupported_reason(get_precision("int4"), h100, tmp_path)
    assert reason is not None and "192x576" in reason
    monkeypatch.setattr(vllm_engine, "marlin_pads_misfit_layers", lambda: True)
    assert vllm_engine.VLLMEngine.unsupported_reason(get_precision("int4"), h100, tmp_path) is None
    assert "needs CUDA compute capability >= 8.9" in (
        vllm_engine.VLLMEngine.unsupported_reason(get_precision("fp8"), t4, tmp_path) or ""
    )
    assert vllm_engine.VLLMEngine.unsupported_reason(get_precision("int4"), cpu, tmp_path) is None
    assert "on CPU" in (vllm_engine.VLLMEngine.unsupported_reason(get_precision("w8a16"), cpu, tmp_path) or "")
