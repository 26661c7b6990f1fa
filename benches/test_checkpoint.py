"""Checkpoint inspection per model × precision: what quantization did to the weights."""

from __future__ import annotations

from pathlib import Path

from pytest_slm.checkpoints.inspect import dtype_histogram, parameter_count, quantization_config
from pytest_slm.checkpoints.quantize import quantization_metrics


def test_checkpoint_compression(slm_engine_facts, slm):
    """Size, compression ratio and bits per parameter against the unquantized source; the quantization
    config (scheme, group size, ignored layers), the dtype histogram, and vLLM's linear kernels; whether
    the quantized checkpoint came from the cache, and the quantization time (measured now on a miss,
    the time recorded with the cached checkpoint on a hit)."""
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
        slm.extend(quantization_metrics(quant))
