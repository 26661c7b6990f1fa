"""Parallel layouts: engine arguments reach ``vllm.LLM``, records and facts carry the layout, and
baselines of multi-device engines live under their own fingerprint."""

from __future__ import annotations

import os
import sys
import types
from pathlib import Path
from typing import Any, ClassVar

import pytest

from pytest_slm.checkpoints.resolve import Checkpoint
from pytest_slm.compare.baseline import fingerprint
from pytest_slm.configs.load import load
from pytest_slm.devices import DeviceChoice, DeviceError, Gpu, apply, choose
from pytest_slm.engine_api import EngineSpec
from pytest_slm.engines.vllm import args as vllm_args
from pytest_slm.parallel import ParallelLayout, gpus_needed
from pytest_slm.parametrize import engine_specs, session_gpus
from pytest_slm.precisions import get_precision
from pytest_slm.settings import Settings
from pytest_slm.shard import ShardPlan
from tests.fake_checkpoints import write_checkpoint

REPO = Path(__file__).resolve().parents[1]
FAKE_GPUS = Path(__file__).parent / "fake_gpus"


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
    from pytest_slm.engines.vllm import engine as vllm_engine

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
    slm.record("mine.x_s", 1.0, unit="s", higher_is_better=False, samples=[1.0] * 6)
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
    # compared (one saved session: a young baseline, so the timing reads inconclusive, never pass)
    assert rows["duo"]["verdict"] == rows["solo"]["verdict"] == "inconclusive"


# -- several GPUs per process --------------------------------------------------------------------

GPUS = [Gpu(i, f"GPU-{c * 4}-0000", f"Fake {i}", (9, 0)) for i, c in enumerate("abcd")]


def test_a_process_takes_as_many_gpus_as_its_largest_engine() -> None:
    single = choose(GPUS, gpu_index=1, gpu_index_source="--slm-gpu-index", worker=None, per_process=2)
    assert single.gpus == (GPUS[1], GPUS[2]) and single.gpu == GPUS[1]
    assert "2 per process" in single.reason and single.describe()["gpu_count"] == 2
    workers = [choose(GPUS, gpu_index=0, gpu_index_source=None, worker=(i, 2), per_process=2).gpus for i in (0, 1)]
    assert workers == [(GPUS[0], GPUS[1]), (GPUS[2], GPUS[3])]
    env: dict[str, str] = {}
    apply(single, env)
    assert env["CUDA_VISIBLE_DEVICES"] == f"{GPUS[1].uuid},{GPUS[2].uuid}"
    assert choose(GPUS, gpu_index=0, gpu_index_source=None, worker=(0, 4)).gpus == (GPUS[0],)  # k = 1 as before


def test_too_few_gpus_for_the_layout_is_an_error() -> None:
    with pytest.raises(DeviceError, match=r"-n 3 starts 3 pytest-xdist workers of 2 GPUs each .* use -n 2"):
        choose(GPUS, gpu_index=0, gpu_index_source=None, worker=(0, 3), per_process=2)
    with pytest.raises(DeviceError, match=r"--slm-gpu-index 3 and the 1 after it .* shows 4 GPU"):
        choose(GPUS, gpu_index=3, gpu_index_source="--slm-gpu-index", worker=None, per_process=2)


def test_session_gpus_follow_the_models_it_runs(tmp_path: Path) -> None:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(
        "models:\n  - {name: one, model: org/one-1b}\n"
        "  - {name: two, model: org/two-8b, engine_args: {tensor_parallel_size: 2}}\n"
        "  - {name: four, model: org/four-70b, engine_args: {tensor_parallel_size: 2, pipeline_parallel_size: 2}}\n"
    )
    config = load(cfg)
    assert session_gpus(Settings(), config, None) == 4
    assert session_gpus(Settings(), None, None) == 1
    only = Settings(models=("one", "two"), sources={"models": "--models"})
    assert session_gpus(only, config, None) == 2
    plan = ShardPlan.build(2, 2, engine_specs(only, config))  # shard 2 holds the 1B model only
    assert plan.models == {"one"} and session_gpus(only, config, plan) == 1


XDIST_TESTS = """
def test_engine_sees_its_gpus(slm_engine, slm_device, slm):
    import os
    slm.record("x", 1.0, unit="1", higher_is_better=True)
    assert os.environ["CUDA_VISIBLE_DEVICES"] == ",".join(g.uuid for g in slm_device.gpus)
"""


def test_xdist_workers_get_two_fake_gpus_each_for_a_tp2_model(
    slm_pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(FAKE_GPUS), os.environ["PYTHONPATH"]]))
    monkeypatch.setenv("SLM_FAKE_GPUS", "H100,H100,H100,H100")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    write_checkpoint(tmp_path / "small", 1000)
    write_checkpoint(tmp_path / "big", 2000)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(
        "models:\n  - {name: small, model: ./small}\n"
        "  - {name: big, model: ./big, engine_args: {tensor_parallel_size: 2, distributed_executor_backend: mp}}\n"
    )
    slm_pytester.pytester.makepyfile(XDIST_TESTS)
    args = ("--slm-models-config", str(cfg), "--models", "small", "big")
    result = slm_pytester.run(*args, "-n", "2", subprocess=True)
    result.assert_outcomes(passed=2)
    visible = {
        kv["worker"]: kv["visible"]
        for kv in (dict(f.split("=", 1) for f in line.split()[2:]) for line in slm_pytester.engine_log())
    }
    assert visible == {"gw0": "GPU-fake-0000,GPU-fake-0001", "gw1": "GPU-fake-0002,GPU-fake-0003"}
    engines = slm_pytester.results()["environment"]["engines"]
    assert engines["big-bf16"]["engine_args"]["tensor_parallel_size"] == 2
    # -n auto: four GPUs, two per worker
    auto = slm_pytester.run(*args, "-n", "auto", subprocess=True)
    auto.assert_outcomes(passed=2)
    assert any("2 workers" in line for line in auto.outlines), auto.outlines[:10]
    three = slm_pytester.run(*args, "-n", "3", subprocess=True)
    assert three.ret != 0
    assert any("workers of 2 GPUs each" in line for line in three.outlines + three.errlines)


def test_energy_skips_a_multi_device_engine(slm_pytester, tmp_path: Path) -> None:
    from tests.test_energy import ENERGY_BENCH, make_zone

    make_zone(tmp_path / "rapl" / "intel-rapl:0", "package-0", 5, max_range=1 << 40)
    write_checkpoint(tmp_path / "duo", 1000)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("models:\n  - {name: duo, model: ./duo, engine_args: {tensor_parallel_size: 2}}\n")
    slm_pytester.pytester.makepyfile(ENERGY_BENCH)
    result = slm_pytester.run(
        "--slm-models-config",
        str(cfg),
        "--models",
        "duo",
        "--slm-power-meter",
        "rapl",
        "--slm-powercap-root",
        str(tmp_path / "rapl"),
    )
    result.assert_outcomes(skipped=2)
    reasons = {s["reason"] for s in slm_pytester.results()["skipped"]}
    assert reasons == {"the energy meter reads one GPU; this engine runs on 2 (tp2-pp1)"}
