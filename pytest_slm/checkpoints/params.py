"""A checkpoint's parameter count, read cheaply: safetensors headers, else config.json.

Pytest-free and import-light (no torch, no safetensors package): a safetensors file starts with
an 8-byte little-endian header length and a JSON header giving every tensor's shape, so the
count costs a few kilobytes of reading however large the weights are.
"""

from __future__ import annotations

import json
import math
import re
import struct
from pathlib import Path
from typing import Any

#: the largest header we accept (the format caps it at 100 MB; real ones are kilobytes to a few MB)
_MAX_HEADER_BYTES = 100 * 1024 * 1024


class ParameterCountError(ValueError):
    """A parameter count that is neither a number nor a size such as ``135M`` or ``1.7B``."""


def safetensors_parameters(path: Path) -> int | None:
    """Sum of the element counts of every tensor in one ``.safetensors`` file; None if unreadable."""
    try:
        with path.open("rb") as f:
            raw = f.read(8)
            if len(raw) != 8:
                return None
            (length,) = struct.unpack("<Q", raw)
            if not 0 < length <= _MAX_HEADER_BYTES:
                return None
            header = json.loads(f.read(length))
    except (OSError, ValueError):
        return None
    if not isinstance(header, dict):
        return None
    total = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        shape = info.get("shape") if isinstance(info, dict) else None
        if not isinstance(shape, list):
            return None
        total += math.prod(int(d) for d in shape)
    return total


def config_parameters(config: dict[str, Any]) -> int | None:
    """An estimate for decoder-only transformers (Llama, Qwen2, Mistral, Phi-3 layouts) from
    config.json: embeddings, attention, gated MLP and norms; biases are left out (they are well
    under 1 % of any such model). None when the config lacks the sizes this needs."""
    try:
        hidden = int(config["hidden_size"])
        layers = int(config["num_hidden_layers"])
        inter = int(config["intermediate_size"])
        vocab = int(config["vocab_size"])
        heads = int(config["num_attention_heads"])
    except (KeyError, TypeError, ValueError):
        return None
    kv_heads = int(config.get("num_key_value_heads") or heads)
    head_dim = int(config.get("head_dim") or hidden // heads)
    attention = hidden * heads * head_dim * 2 + hidden * kv_heads * head_dim * 2  # q, o; k, v
    mlp = 3 * hidden * inter  # gate, up, down
    per_layer = attention + mlp + 2 * hidden  # two norms
    embeddings = vocab * hidden * (1 if config.get("tie_word_embeddings", False) else 2)
    return embeddings + layers * per_layer + hidden


def checkpoint_parameters(path: Path) -> tuple[int, str] | None:
    """The parameter count of a checkpoint directory and how it was found, or None.

    Safetensors headers give the exact count of what is stored (what the Hugging Face hub shows
    as the model size); a checkpoint with ``.bin`` weights only is estimated from config.json.
    """
    files = sorted(path.glob("*.safetensors"))
    if files:
        counts = [safetensors_parameters(f) for f in files]
        if all(c is not None for c in counts):
            return sum(c for c in counts if c is not None), f"safetensors headers of {len(files)} file(s)"
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if isinstance(config, dict) and isinstance(config.get("text_config"), dict):
        config = config["text_config"]  # multimodal wrappers keep the language model's sizes here
    estimate = config_parameters(config) if isinstance(config, dict) else None
    return (estimate, "config.json (estimate)") if estimate else None


_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?(?:e[0-9]+)?)\s*([kmbt]?)\s*$", re.IGNORECASE)
_FACTORS = {"": 1, "k": 10**3, "m": 10**6, "b": 10**9, "t": 10**12}


def parse_parameter_count(raw: Any) -> int:
    """``135M``, ``1.7B``, ``3.8e9`` or an integer -> a parameter count."""
    if isinstance(raw, bool):
        raise ParameterCountError(f"expected a parameter count such as 135M or 1.7B, got {raw!r}")
    if isinstance(raw, (int, float)):
        value = float(raw)
    else:
        m = _SIZE.match(str(raw))
        if not m:
            raise ParameterCountError(f"expected a parameter count such as 135M or 1.7B, got {raw!r}")
        value = float(m.group(1)) * _FACTORS[m.group(2).lower()]
    if value < 1:
        raise ParameterCountError(f"a parameter count must be positive, got {raw!r}")
    return round(value)


def format_parameter_count(n: float) -> str:
    """134515008 -> ``134.5M``; 1711376384 -> ``1.711B``."""
    for factor, suffix in ((10**12, "T"), (10**9, "B"), (10**6, "M"), (10**3, "K")):
        if n >= factor:
            return f"{n / factor:.4g}{suffix}"
    return str(int(n))


_NAME_SIZE = re.compile(r"(?<![0-9a-z.])([0-9]+(?:\.[0-9]+)?)([mb])(?![a-z])", re.IGNORECASE)


def parameters_from_name(name: str) -> int | None:
    """The size a model's name states (``SmolLM2-360M-Instruct`` -> 360M, ``Qwen2.5-1.5B`` -> 1.5B),
    or None. The same on every machine, unlike what happens to be downloaded."""
    found = _NAME_SIZE.findall(name.split("/")[-1])
    if not found:
        return None
    number, unit = found[-1]
    return round(float(number) * _FACTORS[unit.lower()])
