"""llmcompressor recipes per precision, as plain data. Pytest-free and import-light.

A recipe is a list of ``{"modifier": <class name>, **kwargs}`` dicts: the quantization
subprocess turns them into llmcompressor modifiers, and the same dicts go into the cache key,
so a change of recipe is a new checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pytest_slm.precisions import Precision

#: Group sizes tried, largest first; 128 is the W4A16/W8A16 presets' default.
GROUP_SIZES = (128, 64, 32, 16, 8)
IGNORE = ["lm_head"]


def linear_shapes(checkpoint: Path) -> dict[str, tuple[int, int]]:
    """(output N, input K) of each kind of linear layer of a decoder block, from config.json
    (Llama-style attention and gated MLP, which covers the small models this plugin targets)."""
    cfg = json.loads((checkpoint / "config.json").read_text())
    cfg = cfg.get("text_config", cfg)
    hidden = int(cfg["hidden_size"])
    heads = int(cfg.get("num_attention_heads", 1))
    kv_heads = int(cfg.get("num_key_value_heads") or heads)
    head_dim = int(cfg.get("head_dim") or hidden // heads)
    shapes = {
        "q_proj": (heads * head_dim, hidden),
        "k_proj": (kv_heads * head_dim, hidden),
        "v_proj": (kv_heads * head_dim, hidden),
        "o_proj": (hidden, heads * head_dim),
    }
    if cfg.get("intermediate_size"):
        inter = int(cfg["intermediate_size"])
        shapes.update(gate_proj=(inter, hidden), up_proj=(inter, hidden), down_proj=(hidden, inter))
    return shapes


def linear_widths(checkpoint: Path) -> set[int]:
    """Input widths of the transformer's linear layers, from config.json."""
    return {k for _, k in linear_shapes(checkpoint).values()}


def choose_group_size(widths: set[int]) -> int:
    """The scheme default (128) where every width allows it, else the largest that divides them all."""
    for g in GROUP_SIZES:
        if all(w % g == 0 for w in widths):
            return g
    raise ValueError(f"no group size in {GROUP_SIZES} divides the linear layer widths {sorted(widths)}")


def _weights(bits: int, group_size: int, symmetric: bool = True) -> dict[str, Any]:
    return {
        "num_bits": bits,
        "type": "int",
        "symmetric": symmetric,
        "strategy": "group",
        "group_size": group_size,
        "dynamic": False,
    }


def recipe(precision: Precision, checkpoint: Path) -> tuple[list[dict[str, Any]], int | None]:
    """The recipe for ``precision`` on ``checkpoint`` and the group size it uses (None: per channel)."""
    if not precision.quantized:
        raise ValueError(f"precision {precision.name} needs no quantization")
    base = {"targets": ["Linear"], "ignore": IGNORE}
    pruning = _pruning(precision)
    if pruning is not None and precision.scheme is None:
        return [pruning], None
    if precision.name == "fp8":
        return [{"modifier": "QuantizationModifier", **base, "scheme": "FP8_DYNAMIC"}], None
    if precision.name == "int8":
        return [
            {"modifier": "SmoothQuantModifier", "smoothing_strength": 0.8},
            {"modifier": "GPTQModifier", **base, "scheme": "W8A8"},
        ], None
    group = choose_group_size(linear_widths(checkpoint))
    bits = precision.weight_bits
    groups = {"group_0": {"targets": ["Linear"], "weights": _weights(bits, group, symmetric=precision.method != "awq")}}
    quant = {"ignore": IGNORE, "config_groups": groups}
    if precision.method == "gptq":
        return [{"modifier": "GPTQModifier", **quant}], group
    if pruning is not None and precision.method == "sparsegpt+gptq":
        return [pruning, {"modifier": "GPTQModifier", **quant}], group
    if pruning is not None and precision.method == "sparsegpt+rtn":
        return [pruning, {"modifier": "QuantizationModifier", **quant}], group
    if precision.method == "rtn":
        return [{"modifier": "QuantizationModifier", **quant}], group
    if precision.method == "awq":
        return [
            {"modifier": "AWQModifier", "duo_scaling": "both"},
            {"modifier": "QuantizationModifier", **quant},
        ], group
    raise ValueError(f"no recipe for precision {precision.name} (method {precision.method})")


def _pruning(precision: Precision) -> dict[str, Any] | None:
    """The pruning step of a sparse precision: SparseGPT for 2:4, Wanda for unstructured."""
    if precision.sparsity is None:
        return None
    # llmcompressor's "N:M" mask structure prunes N of every M consecutive input weights;
    # "0:0" is an unstructured mask at the target fraction.
    mask = "0:0" if precision.sparsity == "unstructured" else precision.sparsity
    modifier = "WandaPruningModifier" if precision.method == "wanda" else "SparseGPTModifier"
    return {
        "modifier": modifier,
        "sparsity": precision.sparsity_fraction,
        "mask_structure": mask,
        "targets": ["Linear"],
        "ignore": IGNORE,
    }


def needs_calibration(steps: list[dict[str, Any]]) -> bool:
    """Round-to-nearest and FP8 dynamic are data-free; GPTQ, SmoothQuant and AWQ are not."""
    return any(
        s["modifier"]
        in (
            "GPTQModifier",
            "SmoothQuantModifier",
            "AWQModifier",
            "SparseGPTModifier",
            "WandaPruningModifier",
        )
        for s in steps
    )
