"""Decode roofline: bytes moved per output token, model bandwidth utilization (MBU), roofline TPOT.

Single-stream decode reads every weight once per token, at its stored precision (packed ints,
scales and zero points included), and the KV cache of the context so far. A perfect implementation
is limited by memory bandwidth: roofline TPOT = bytes per token ÷ bandwidth; MBU = bytes per token
÷ TPOT ÷ bandwidth. An MBU above 1 means the measurement or the byte count is wrong.

Pytest-free; reads safetensors headers only (no tensor is loaded).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_slm.checkpoints.inspect import DTYPE_BITS, tensor_table

#: bytes per element of a KV-cache dtype (auto = the model's activation dtype)
KV_DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "float32": 4, "fp8": 1, "fp8_e4m3": 1, "fp8_e5m2": 1}
EMBEDDING_NAMES = ("embed_tokens", "wte", "embed_in")


@dataclass(frozen=True)
class DecodeBytes:
    """Bytes one single-stream decode step reads, and how they were counted."""

    weight_bytes: int
    kv_bytes_per_position: float
    mean_context_tokens: float
    tied_embeddings: bool
    embedding_bytes_excluded: int

    @property
    def kv_bytes(self) -> float:
        return self.kv_bytes_per_position * self.mean_context_tokens

    @property
    def total(self) -> float:
        return self.weight_bytes + self.kv_bytes


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _text_config(checkpoint: Path) -> dict[str, Any]:
    cfg: dict[str, Any] = json.loads((checkpoint / "config.json").read_text())
    return dict(cfg.get("text_config", cfg)) | {"tie_word_embeddings": cfg.get("tie_word_embeddings", False)}


def weight_bytes_per_token(checkpoint: Path) -> tuple[int, bool, int]:
    """Stored bytes of every tensor a decode step reads: (bytes, tied embeddings, bytes left out).

    An untied input embedding is only gathered (one row per token), so it is left out; a tied one
    is the output projection too, read in full for the logits.
    """
    tied = bool(_text_config(checkpoint).get("tie_word_embeddings"))
    total = excluded = 0
    for name, (dtype, shape) in tensor_table(checkpoint).items():
        size = _numel(shape) * DTYPE_BITS.get(dtype, 8) // 8
        if not tied and any(e in name for e in EMBEDDING_NAMES):
            excluded += size
            continue
        total += size
    return total, tied, excluded


def kv_bytes_per_position(checkpoint: Path, kv_cache_dtype: str, model_dtype: str = "bfloat16") -> float:
    """K and V bytes per token position over all layers, from config.json (engines may report their own)."""
    cfg = _text_config(checkpoint)
    layers = int(cfg["num_hidden_layers"])
    heads = int(cfg["num_attention_heads"])
    kv_heads = int(cfg.get("num_key_value_heads") or heads)
    head_dim = int(cfg.get("head_dim") or int(cfg["hidden_size"]) // heads)
    dtype = model_dtype if kv_cache_dtype == "auto" else kv_cache_dtype
    if dtype not in KV_DTYPE_BYTES:
        raise ValueError(f"unknown KV-cache dtype {dtype!r}; known: {', '.join(KV_DTYPE_BYTES)}")
    return float(2 * layers * kv_heads * head_dim * KV_DTYPE_BYTES[dtype])


def decode_bytes(
    checkpoint: Path,
    *,
    prompt_tokens: float,
    output_tokens: float,
    kv_bytes_per_position_reported: float | None = None,
    kv_cache_dtype: str = "auto",
    model_dtype: str = "bfloat16",
) -> DecodeBytes:
    """Bytes per output token averaged over the decode steps TPOT covers (tokens 2..n attend to
    ``prompt + 1 .. prompt + n - 1`` positions: mean ``prompt + n / 2``)."""
    weights, tied, excluded = weight_bytes_per_token(checkpoint)
    per_position = kv_bytes_per_position_reported or kv_bytes_per_position(checkpoint, kv_cache_dtype, model_dtype)
    return DecodeBytes(weights, per_position, prompt_tokens + output_tokens / 2, tied, excluded)


def mbu(bytes_per_token: float, tpot_s: float, bandwidth_bytes_per_s: float) -> float:
    """Model bandwidth utilization: achieved bytes/s ÷ achievable bytes/s."""
    if tpot_s <= 0 or bandwidth_bytes_per_s <= 0:
        raise ValueError(f"TPOT ({tpot_s}) and bandwidth ({bandwidth_bytes_per_s}) must be positive")
    return bytes_per_token / tpot_s / bandwidth_bytes_per_s
