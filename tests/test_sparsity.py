"""Sparsity measured on saved tensors: dense and pack-quantized (int4) checkpoints written here with
the same libraries llmcompressor saves with (safetensors, compressed-tensors' packing)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
safetensors_torch = pytest.importorskip("safetensors.torch")

from pytest_slm.checkpoints.inspect import weight_sparsity  # noqa: E402


def two_of_four(rows: int, cols: int, seed: int = 0) -> Any:
    """A weight with exactly 2 zeros in every 4 consecutive input weights."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(rows, cols, generator=g) + 3.0  # no accidental zeros
    keep = torch.rand(rows, cols // 4, 4, generator=g).argsort(dim=-1) < 2
    return (w.reshape(rows, cols // 4, 4) * keep).reshape(rows, cols)


def save(path: Path, tensors: dict[str, Any], quantization_config: dict[str, Any] | None = None) -> Path:
    path.mkdir()
    cfg: dict[str, Any] = {"model_type": "llama"}
    if quantization_config:
        cfg["quantization_config"] = quantization_config
    (path / "config.json").write_text(json.dumps(cfg))
    safetensors_torch.save_file({k: v.contiguous() for k, v in tensors.items()}, str(path / "model.safetensors"))
    return path


def test_dense_two_of_four_is_verified_and_embeddings_are_left_out(tmp_path: Path) -> None:
    ckpt = save(
        tmp_path / "sparse",
        {
            "model.layers.0.mlp.up_proj.weight": two_of_four(16, 32).to(torch.bfloat16),
            "model.layers.0.self_attn.q_proj.weight": two_of_four(8, 32, seed=1).to(torch.bfloat16),
            "model.layers.0.input_layernorm.weight": torch.ones(32),
            "model.embed_tokens.weight": torch.ones(50, 32),  # dense, not pruned, not counted
        },
    )
    r = weight_sparsity(ckpt)
    assert r["overall"] == pytest.approx(0.5) and r["min_layer"] == r["max_layer"] == pytest.approx(0.5)
    assert r["two_of_four"] is True and r["layers_measured"] == 2 and r["formats"] == ["dense"]
    assert set(r["layers"]) == {"model.layers.0.mlp.up_proj", "model.layers.0.self_attn.q_proj"}


def test_unstructured_half_is_not_two_of_four(tmp_path: Path) -> None:
    w = torch.randn(16, 32) + 3.0
    w[:, :16] = 0  # half zeros, but whole groups of 4 dense on the right
    r = weight_sparsity(save(tmp_path / "u", {"model.layers.0.mlp.down_proj.weight": w}))
    assert r["overall"] == pytest.approx(0.5)
    assert r["two_of_four"] is False
    assert r["layers"]["model.layers.0.mlp.down_proj"]["two_of_four_groups"] == pytest.approx(0.5)


def test_pack_quantized_int4_is_dequantized_before_counting(tmp_path: Path) -> None:
    from compressed_tensors.compressors.pack_quantized.helpers import pack_to_int32

    rows, cols, group = 8, 32, 16
    dense = two_of_four(rows, cols)
    scale = torch.full((rows, cols // group), 0.5)
    q = torch.clamp(torch.round(dense / 0.5), -8, 7).to(torch.int8)
    q[0, 1] = 0  # a weight rounded to zero: still a zero weight after dequantization
    packed = pack_to_int32(q, 4)
    config = {
        "format": "pack-quantized",
        "quant_method": "compressed-tensors",
        "config_groups": {
            "group_0": {
                "targets": ["Linear"],
                "weights": {
                    "num_bits": 4,
                    "type": "int",
                    "symmetric": True,
                    "strategy": "group",
                    "group_size": group,
                    "dynamic": False,
                },
            }
        },
    }
    ckpt = save(
        tmp_path / "int4",
        {
            "model.layers.0.mlp.gate_proj.weight_packed": packed,
            "model.layers.0.mlp.gate_proj.weight_scale": scale.to(torch.bfloat16),
            "model.layers.0.mlp.gate_proj.weight_shape": torch.tensor([rows, cols]),
        },
        config,
    )
    r = weight_sparsity(ckpt)
    expected = float((q == 0).float().mean())
    assert r["formats"] == ["pack-quantized"] and r["layers_measured"] == 1
    assert r["overall"] == pytest.approx(expected) and expected >= 0.5
    assert r["two_of_four"] is True


def test_checkpoint_without_linear_weights_is_an_error(tmp_path: Path) -> None:
    ckpt = save(tmp_path / "none", {"model.norm.weight": torch.ones(4)})
    with pytest.raises(ValueError, match="no 2-D linear weights"):
        weight_sparsity(ckpt)
