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
