"""What a checkpoint holds, read from safetensors headers and config.json (no tensor is loaded)."""

from __future__ import annotations

import json
import struct
from collections import Counter
from pathlib import Path
from typing import Any

DTYPE_BITS = {
    "F64": 64,
    "F32": 32,
    "F16": 16,
    "BF16": 16,
    "I64": 64,
    "I32": 32,
    "I16": 16,
    "I8": 8,
    "U8": 8,
    "F8_E4M3": 8,
    "F8_E5M2": 8,
    "BOOL": 8,
}


def tensor_table(path: Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """name -> (dtype, shape) over every ``*.safetensors`` file of a checkpoint."""
    out: dict[str, tuple[str, tuple[int, ...]]] = {}
    for f in sorted(path.glob("*.safetensors")):
        with f.open("rb") as fh:
            (size,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(size))
        for name, entry in header.items():
            if name != "__metadata__":
                out[name] = (entry["dtype"], tuple(entry["shape"]))
    return out


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def dtype_histogram(path: Path) -> dict[str, int]:
    """Bytes held per tensor dtype."""
    hist: Counter[str] = Counter()
    for dtype, shape in tensor_table(path).values():
        hist[dtype] += _numel(shape) * DTYPE_BITS.get(dtype, 8) // 8
    return dict(hist)


def parameter_count(path: Path) -> int:
    """Logical parameters of an unquantized checkpoint (the source, for bits per parameter)."""
    return sum(_numel(shape) for _, shape in tensor_table(path).values())


def quantization_config(path: Path) -> dict[str, Any]:
    """Scheme, group size and ignored layers from config.json's ``quantization_config``."""
    cfg = json.loads((path / "config.json").read_text())
    q = cfg.get("quantization_config")
    if not q:
        return {"format": None}
    groups = q.get("config_groups", {})
    weights = [g.get("weights") or {} for g in groups.values()]
    acts = [g.get("input_activations") or {} for g in groups.values()]
    return {
        "format": q.get("format") or q.get("quant_method"),
        "weight_bits": sorted({w.get("num_bits") for w in weights if w}),
        "weight_strategy": sorted({w.get("strategy") for w in weights if w}),
        "group_size": sorted({w.get("group_size") for w in weights if w.get("group_size")}),
        "activation_bits": sorted({a.get("num_bits") for a in acts if a}),
        "ignore": q.get("ignore", []),
    }


#: 2-D weights that are not pruned or quantized by the recipes (the lookup table and the head)
UNPRUNED = ("embed_tokens", "lm_head", "wte", "embed_in", "embed_out")


def _scheme_for(module: str, quant: dict[str, Any]) -> tuple[Any, str]:
    """The compressed-tensors scheme and format that apply to ``module``."""
    import re

    from compressed_tensors.quantization import QuantizationScheme

    groups = quant.get("config_groups", {})
    chosen = None
    for group in groups.values():
        targets = group.get("targets", [])
        if any(t.startswith("re:") and re.match(t[3:], module) for t in targets):
            chosen = group
            break
    chosen = chosen or next(iter(groups.values()))
    fmt = str(chosen.get("format") or quant.get("format") or "dense")
    return QuantizationScheme.model_validate({k: v for k, v in chosen.items() if k != "format"}), fmt


def _dense_weights(path: Path) -> Any:
    """Yield (module name, dense weight) for every 2-D linear weight of a checkpoint, decompressing
    quantized formats with compressed-tensors' own compressor (the weights vLLM multiplies with)."""
    from compressed_tensors.compressors.base import BaseCompressor
    from safetensors import safe_open

    cfg = json.loads((path / "config.json").read_text())
    quant = cfg.get("quantization_config") or {}
    for f in sorted(path.glob("*.safetensors")):
        with safe_open(str(f), framework="pt") as fh:
            names = set(fh.keys())
            for name in sorted(names):
                module, _, leaf = name.rpartition(".")
                if any(part in module for part in UNPRUNED):
                    continue
                if leaf == "weight_packed" or (leaf == "weight" and f"{module}.weight_scale" in names):
                    scheme, fmt = _scheme_for(module, quant)
                    local = {k.rpartition(".")[2]: fh.get_tensor(k) for k in names if k.rpartition(".")[0] == module}
                    local.pop("bias", None)
                    dense = BaseCompressor.get_value_from_registry(fmt).decompress(local, scheme)["weight"]
                    yield module, dense, fmt
                elif leaf == "weight":
                    tensor = fh.get_tensor(name)
                    if tensor.ndim == 2:
                        yield module, tensor, "dense"


def weight_sparsity(path: Path) -> dict[str, Any]:
    """Zeros in the saved linear weights of a checkpoint, per layer and overall, and whether every
    group of 4 consecutive weights along the input dimension holds at least 2 zeros (2:4).

    Quantized formats are decompressed first (a packed int4 zero is a zero weight only after
    dequantization with its group's scale and zero point). Loads one tensor at a time.
    """
    layers: dict[str, dict[str, Any]] = {}
    total = zeros = 0
    formats: set[str] = set()
    for module, weight, fmt in _dense_weights(path):
        formats.add(fmt)
        is_zero = weight == 0
        n = weight.numel()
        z = int(is_zero.sum())
        rows, cols = weight.shape
        groups_ok = None
        if cols % 4 == 0:
            per_group = is_zero.reshape(rows, cols // 4, 4).sum(dim=-1)
            groups_ok = float((per_group >= 2).float().mean())
        layers[module] = {"zeros": z / n, "shape": [rows, cols], "two_of_four_groups": groups_ok}
        total += n
        zeros += z
    if not layers:
        raise ValueError(f"no 2-D linear weights found in {path}")
    fractions = [v["zeros"] for v in layers.values()]
    return {
        "overall": zeros / total,
        "min_layer": min(fractions),
        "max_layer": max(fractions),
        "layers_measured": len(layers),
        "parameters_measured": total,
        "two_of_four_layers": sum(1 for v in layers.values() if v["two_of_four_groups"] == 1.0),
        "two_of_four": all(v["two_of_four_groups"] == 1.0 for v in layers.values()),
        "formats": sorted(formats),
        "method": "zeros counted on the saved tensors; quantized weights dequantized with compressed-tensors' "
        "compressor for their format first; embeddings and lm_head excluded (not pruned)",
        "layers": layers,
    }
