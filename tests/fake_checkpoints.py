"""Checkpoint directories of a chosen parameter count, for tests that never load weights.

A safetensors file is an 8-byte header length, a JSON header, then the tensor bytes. Parameter
counting reads the header only, so these files carry the header and no data: a "1.7B" checkpoint
costs a few hundred bytes.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def safetensors_header_only(path: Path, shapes: Mapping[str, Sequence[int]]) -> None:
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, shape in shapes.items():
        size = 2
        for d in shape:
            size *= d
        header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw)


def write_checkpoint(path: Path, parameters: int, config: Mapping[str, Any] | None = None) -> Path:
    """A directory that passes as a Hugging Face checkpoint holding ``parameters`` parameters."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(config or {"model_type": "llama"}))
    rows = 1000
    safetensors_header_only(
        path / "model.safetensors",
        {"model.embed_tokens.weight": [rows, parameters // rows], "model.norm.weight": [parameters % rows]},
    )
    return path
