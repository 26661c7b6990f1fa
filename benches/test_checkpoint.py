"""Checkpoint inspection per model × precision: what quantization did to the weights."""

from __future__ import annotations

from pathlib import Path

from pytest_slm.checkpoints.inspect import dtype_histogram, parameter_count, quantization_config


def test_checkpoint_compression(slm_engine_facts, slm):
    """Size, compression ratio and bits per parameter against the unquantized source; the quantization
    config (scheme, group size, ignored layers), the dtype histogram, and vLLM's linear kernels."""
    quant = slm_engine_facts.get("quantized_checkpoint")
    path = Path(slm_engine_facts["checkpoint"])
    size = slm_engine_facts["checkpoint_bytes"]
    source = Path(quant["source"]) if quant else path
    source_bytes = quant["source_bytes"] if quant else size
    params = parameter_count(source)
    weight_bytes = sum(dtype_histogram(path).values())
    info = {
        "quantization_config": quantization_config(path),
        "dtype_bytes": dtype_histogram(path),
        "linear_kernels": slm_engine_facts.get("linear_kernels"),
        "fallback": slm_engine_facts.get("fallback"),
    }
    slm.record(
        "compression_ratio", source_bytes / size, unit="1", higher_is_better=True, source_bytes=source_bytes, **info
    )
    slm.record(
        "bits_per_parameter", 8 * weight_bytes / params, unit="bit/param", higher_is_better=False, parameters=params
    )
    if quant:
        slm.record(
            "quantize_s",
            quant["quantize_s"],
            unit="s",
            higher_is_better=False,
            group_size=quant.get("group_size"),
            samples_used=quant.get("samples_used"),
            calibration=quant.get("calibration"),
        )
        # a hit costs a hash lookup; a miss includes quantizing, so the two are different metrics
        name = "quantized_cache_hit_s" if quant["cache_hit"] else "quantized_cache_miss_s"
        slm.record(name, quant["ready_s"], unit="s", higher_is_better=False)
