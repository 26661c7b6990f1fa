"""Checkpoint inspection per model × precision: what quantization and pruning did to the weights."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_slm.checkpoints.inspect import dtype_histogram, parameter_count, quantization_config, weight_sparsity
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


#: a pruned checkpoint may miss its target fraction of zeros by at most this much (rounding per row)
SPARSITY_SLACK = 0.005


def test_weight_sparsity(slm_engine_facts, slm):
    """Zeros in the saved linear weights (per layer and overall, quantized weights dequantized first),
    against the precision's target, and the 2:4 pattern (every 4 consecutive input weights hold at
    least 2 zeros) where the precision promises it. How vLLM executes the zeros is in the info."""
    precision = slm.spec.precision
    if precision.sparsity is None:
        pytest.skip(f"{precision.name} is not a pruned precision")
    report = weight_sparsity(Path(slm_engine_facts["checkpoint"]))
    layers = report.pop("layers")
    slm.attach(f"sparsity/{slm.spec.id}.jsonl", [{"layer": name, **values} for name, values in sorted(layers.items())])
    info = {
        **{k: v for k, v in report.items() if k not in ("overall", "min_layer", "max_layer")},
        "target": precision.sparsity_fraction,
        "pattern": precision.sparsity,
        "execution": slm_engine_facts.get("sparse_execution"),
    }
    slm.record("weight_sparsity", report["overall"], unit="1", higher_is_better=True, **info)
    slm.record("weight_sparsity_min_layer", report["min_layer"], unit="1", higher_is_better=True)
    slm.record("weight_sparsity_max_layer", report["max_layer"], unit="1", higher_is_better=True)
    two_of_four = [v["two_of_four_groups"] for v in layers.values() if v["two_of_four_groups"] is not None]
    slm.record(
        "two_of_four_group_fraction",
        min(two_of_four) if two_of_four else 0.0,
        unit="1",
        higher_is_better=True,
        note="smallest fraction, over layers, of 4-weight input groups holding at least 2 zeros (1.0 = 2:4)",
    )
    problems = []
    if report["min_layer"] < precision.sparsity_fraction - SPARSITY_SLACK:
        problems.append(
            f"a layer holds {report['min_layer']:.4f} zeros; {precision.name} promises {precision.sparsity_fraction}"
        )
    if precision.sparsity == "2:4" and not report["two_of_four"]:
        bad = sorted(k for k, v in layers.items() if v["two_of_four_groups"] != 1.0)
        problems.append(f"2:4 pattern broken in {len(bad)} of {len(layers)} layers, e.g. {bad[:3]}")
    assert not problems, f"{precision.name} checkpoint: " + "; ".join(problems)
