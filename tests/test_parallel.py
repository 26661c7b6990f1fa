"""Parallel layouts: engine arguments reach ``vllm.LLM``, records and facts carry the layout, and
baselines of multi-device engines live under their own fingerprint."""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any, ClassVar

import pytest

from pytest_slm.checkpoints.resolve import Checkpoint
from pytest_slm.compare.baseline import fingerprint
from pytest_slm.devices import DeviceChoice
from pytest_slm.engines import vllm_args
from pytest_slm.engines.base import EngineSpec
from pytest_slm.modelconfig import load
from pytest_slm.parallel import ParallelLayout, gpus_needed
from pytest_slm.parametrize import engine_specs
from pytest_slm.precisions import get_precision
from pytest_slm.settings import Settings
from tests.fake_checkpoints import write_checkpoint

REPO = Path(__file__).resolve().parents[1]


def test_layout_and_gpus_needed() -> None:
    assert gpus_needed({}) == 1
    assert gpus_needed({"tensor_parallel_size": 2}) == 2
    assert gpus_needed({"tensor_parallel_size": 2, "pipeline_parallel_size": 2}) == 4
    layout = ParallelLayout.from_engine_args({"tensor_parallel_size": 4, "distributed_executor_backend": "ray"})
    assert layout.label == "tp4-pp1-ray" and layout.devices == 4
    assert ParallelLayout.from_engine_args({"distributed_executor_backend": "external_launcher"}).label == (
        "tp1-pp1-external-launcher"
    )


def test_fingerprint_gains_a_suffix_only_beyond_one_device() -> None:
    env = {
        "hardware": {"gpu_name": "NVIDIA H100 80GB HBM3", "gpu_count": 8},
        "versions": {"vllm": "0.26.0", "torch": "2.11.0"},
    }
    base = fingerprint(env, "vllm")
    assert base == "nvidia-h100-80gb-hbm3-x8__vllm-0.26__torch-2.11"
    assert fingerprint(env, "vllm", None) == base == fingerprint(env, "vllm", "tp1-pp1")
    assert fingerprint(env, "vllm", "tp1-pp1-mp") == base
    assert fingerprint(env, "vllm", "tp2-pp1") == base + "__tp2-pp1"
    assert fingerprint(env, "vllm", "tp2-pp2-ray") == base + "__tp2-pp2-ray"


class RecordingLLM:
    """Stands in for ``vllm.LLM``: records the keyword arguments it is built with."""

    calls: ClassVar[list[dict[str, Any]]] = []

    def __init__(self, **kwargs: Any) -> None:
        RecordingLLM.calls.append(kwargs)


CPU = DeviceChoice("cpu", "test")


def test_engine_args_reach_the_vllm_constructor(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from pytest_slm.engines import vllm_engine

    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(LLM=RecordingLLM))
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "1")
    monkeypatch.setenv("VLLM_HOST_IP", "127.0.0.1")
    RecordingLLM.calls.clear()
    ckpt = write_checkpoint(tmp_path / "m", 1000)
    cfg = tmp_path / "m.yaml"
    cfg.write_text(
        "models:\n  - name: m\n    model: ./m\n    precisions: [int4]\n    engine_args:\n"
        "      tensor_parallel_size: 2\n      pipeline_parallel_size: 2\n      distributed_executor_backend: ray\n"
        "      enforce_eager: false\n      kv_cache_dtype: fp8\n      trust_remote_code: true\n"
        "      dtype: float16\n      chat_template: '{{ messages }}'\n"
    )
    (spec,) = engine_specs(Settings(), load(cfg))
    engine = vllm_engine.VLLMEngine(spec, Checkpoint("m", ckpt, str(ckpt), "0" * 64), Settings(), CPU)
    (kwargs,) = RecordingLLM.calls
    assert kwargs["model"] == str(ckpt)
    for key, value in {
        "tensor_parallel_size": 2,
        "pipeline_parallel_size": 2,
        "distributed_executor_backend": "ray",
        "enforce_eager": False,  # the entry beats the CPU default
        "kv_cache_dtype": "fp8",
        "trust_remote_code": True,
        "dtype": "float16",  # int4 runs at "auto": the entry may choose
        "chat_template": "{{ messages }}",
        "max_model_len": vllm_args.CPU_DEFAULT_MAX_MODEL_LEN,
    }.items():
        assert kwargs[key] == value, key
        assert engine.engine_args[key] == value, key  # and the report's engine facts show them


def test_without_a_config_the_kwargs_are_what_they_always_were(tmp_path: Path) -> None:
    ckpt = write_checkpoint(tmp_path / "m", 1000)
    checkpoint = Checkpoint("m", ckpt, str(ckpt), "0" * 64)
    plain_spec = EngineSpec(str(ckpt), get_precision("bf16"))
    plain = vllm_args.engine_kwargs(plain_spec, checkpoint, Settings(), on_cuda=False)
    assert "tensor_parallel_size" not in plain and plain["enforce_eager"] is True and plain["dtype"] == "bfloat16"
    args = {"tensor_parallel_size": 2, "max_model_len": 512}
    spec = EngineSpec(str(ckpt), get_precision("bf16"), engine_args=args)
    on_gpu = vllm_args.engine_kwargs(plain_spec, checkpoint, Settings(), on_cuda=True)
    assert vllm_args.engine_kwargs(spec, checkpoint, Settings(), on_cuda=True) == {**on_gpu, **args}


TESTS = """
def test_a(slm_engine, slm):
    slm.record("x_s", 1.0, unit="s", higher_is_better=False, samples=[1.0] * 6)
"""


def test_multi_device_baselines_live_under_their_own_fingerprint(slm_pytester, tmp_path: Path) -> None:
    write_checkpoint(tmp_path / "solo", 1000)
    write_checkpoint(tmp_path / "duo", 1000)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(
        "models:\n  - {name: solo, model: ./solo}\n"
        "  - {name: duo, model: ./duo, engine_args: {tensor_parallel_size: 2}}\n"
    )
    slm_pytester.pytester.makepyfile(TESTS)
    baselines = tmp_path / "baselines"
    args = ("--slm-models-config", str(cfg), "--models", "solo", "duo", "--slm-baseline-dir", str(baselines))
    slm_pytester.run(*args, "--slm-save-baseline").assert_outcomes(passed=2)
    (single,) = [d.name for d in baselines.iterdir() if not d.name.endswith("__tp2-pp1")]
    assert sorted(d.name for d in baselines.iterdir()) == [single, single + "__tp2-pp1"]
    assert (baselines / single / "solo" / "bf16.json").is_file()
    assert (baselines / (single + "__tp2-pp1") / "duo" / "bf16.json").is_file()
    assert not (baselines / single / "duo").exists()
    # the next run compares each model with its own layout's baseline
    slm_pytester.run(*args).assert_outcomes(passed=2)
    rows = {r["model"]: r["baseline"] for r in slm_pytester.results()["records"]}
    assert rows["duo"]["file"] == str(baselines / (single + "__tp2-pp1") / "duo" / "bf16.json")
    assert rows["solo"]["file"] == str(baselines / single / "solo" / "bf16.json")
    assert rows["duo"]["verdict"] == rows["solo"]["verdict"] == "pass"
