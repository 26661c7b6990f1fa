"""Roofline: bytes per decode token from safetensors headers, KV bytes, MBU, the bandwidth cache, and the
bench test's invalid verdict when MBU exceeds 1 (on the fake engine, with a bandwidth we choose)."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import pytest

from pytest_slm.measure import bandwidth as bwmod
from pytest_slm.measure.roofline import decode_bytes, kv_bytes_per_position, mbu, weight_bytes_per_token

REPO = Path(__file__).resolve().parents[1]
SMOL = {
    "model_type": "llama",
    "hidden_size": 576,
    "num_attention_heads": 9,
    "num_key_value_heads": 3,
    "num_hidden_layers": 30,
    "intermediate_size": 1536,
}


def checkpoint(path: Path, tensors: dict[str, tuple[str, list[int]]], **cfg: object) -> Path:
    """A checkpoint whose safetensors header lists ``tensors`` (name -> dtype, shape); data are zeros."""
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({**SMOL, **cfg}))
    header: dict[str, object] = {}
    offset = 0
    bits = {"BF16": 16, "I32": 32, "F32": 32, "F8_E4M3": 8}
    for name, (dtype, shape) in tensors.items():
        size = bits[dtype] // 8
        for d in shape:
            size *= d
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    (path / "model.safetensors").write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * offset)
    return path


def test_tied_embeddings_are_read_untied_input_embeddings_are_not(tmp_path: Path) -> None:
    tensors = {"model.embed_tokens.weight": ("BF16", [100, 8]), "model.layers.0.mlp.up_proj.weight": ("BF16", [4, 8])}
    tied = checkpoint(tmp_path / "tied", tensors, tie_word_embeddings=True)
    assert weight_bytes_per_token(tied) == (100 * 8 * 2 + 4 * 8 * 2, True, 0)
    untied = checkpoint(
        tmp_path / "untied", {**tensors, "lm_head.weight": ("BF16", [100, 8])}, tie_word_embeddings=False
    )
    assert weight_bytes_per_token(untied) == (100 * 8 * 2 + 4 * 8 * 2, False, 100 * 8 * 2)


def test_packed_weights_count_at_their_stored_size(tmp_path: Path) -> None:
    ckpt = checkpoint(
        tmp_path / "int4",
        {
            "model.layers.0.mlp.up_proj.weight_packed": ("I32", [16, 4]),  # 16 x 32 int4 values
            "model.layers.0.mlp.up_proj.weight_scale": ("BF16", [16, 1]),
        },
        tie_word_embeddings=True,
    )
    assert weight_bytes_per_token(ckpt)[0] == 16 * 4 * 4 + 16 * 2


def test_kv_bytes_follow_the_kv_dtype(tmp_path: Path) -> None:
    ckpt = checkpoint(tmp_path / "c", {"w": ("BF16", [2, 2])})
    assert kv_bytes_per_position(ckpt, "auto") == 2 * 30 * 3 * 64 * 2  # K and V, 30 layers, 3 KV heads of 64
    assert kv_bytes_per_position(ckpt, "fp8") == 2 * 30 * 3 * 64
    with pytest.raises(ValueError, match="unknown KV-cache dtype"):
        kv_bytes_per_position(ckpt, "int3")
    d = decode_bytes(ckpt, prompt_tokens=100, output_tokens=20)
    assert d.mean_context_tokens == 110 and d.total == 8 + 110 * 23040
    reported = decode_bytes(ckpt, prompt_tokens=100, output_tokens=20, kv_bytes_per_position_reported=1000.0)
    assert reported.kv_bytes == 110_000


def test_mbu() -> None:
    assert mbu(1e6, 0.01, 2e8) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        mbu(1e6, 0.0, 1e9)


def test_bandwidth_is_measured_once_per_fingerprint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bwmod, "MIN_ARRAY_BYTES", 4 * 2**20)
    monkeypatch.setattr(bwmod, "array_bytes_for", lambda llc: 4 * 2**20)
    first = bwmod.cached_bandwidth(tmp_path, "fp-x", "cpu")
    assert not first.cached and first.bytes_per_s >= min(first.copy_bytes_per_s, first.triad_bytes_per_s) > 0
    assert "copy and triad" in first.method and first.array_bytes == 4 * 2**20
    second = bwmod.cached_bandwidth(tmp_path, "fp-x", "cpu")
    assert second.cached and second.bytes_per_s == first.bytes_per_s
    (tmp_path / "bandwidth" / "fp-x-cpu.json").write_text("{broken")
    assert not bwmod.cached_bandwidth(tmp_path, "fp-x", "cpu").cached  # a corrupt cache is measured again


def test_last_level_cache_from_sysfs(tmp_path: Path) -> None:
    for i, size in enumerate(["48K", "2048K", "32M"]):
        (tmp_path / f"index{i}").mkdir()
        (tmp_path / f"index{i}" / "size").write_text(size + "\n")
    assert bwmod.last_level_cache_bytes(tmp_path) == 32 * 2**20
    assert bwmod.last_level_cache_bytes(tmp_path / "none") is None
    assert bwmod.array_bytes_for(32 * 2**20) == 256 * 2**20


CONFTEST = """
import pytest
from pytest_slm.measure.bandwidth import Bandwidth

@pytest.fixture(scope="session")
def slm_memory_bandwidth():
    bw = float(__import__("os").environ["BW"])
    return Bandwidth(bw, bw, bw, 1, 1, "cpu", "given by the test")
"""


@pytest.mark.parametrize(("bw", "outcome"), [("1e12", "passed"), ("1e3", "invalid")])
def test_mbu_above_one_is_an_invalid_measurement(
    slm_pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bw: str, outcome: str
) -> None:
    ckpt = checkpoint(tmp_path / "tiny-model", {"model.layers.0.mlp.up_proj.weight": ("BF16", [64, 64])})
    monkeypatch.setenv("BW", bw)
    p = slm_pytester.pytester
    p.makeconftest(CONFTEST)
    shutil.copy(REPO / "benches" / "test_roofline.py", p.path / "test_roofline.py")
    result = slm_pytester.run("--models", str(ckpt), "-k", "decode_roofline")
    records = {r["metric"]: r for r in slm_pytester.results()["records"]}
    assert records["mbu"]["outcome"] == outcome
    assert len(records["mbu"]["samples"]) == 3  # one MBU per repetition
    tpot = 0.02  # the fake engine's
    expected = records["decode_bytes_per_token"]["value"] / tpot / float(bw)
    assert records["mbu"]["value"] == pytest.approx(expected, rel=1e-3)
    assert records["roofline_tpot_s"]["value"] == pytest.approx(records["decode_bytes_per_token"]["value"] / float(bw))
    if outcome == "invalid":
        result.stdout.fnmatch_lines(["*invalid measurement*MBU * > 1*"])
