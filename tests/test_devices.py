"""Device choice: one GPU per process, made once, read by engine, meter and gating alike."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from pytest_slm.devices import DeviceError, Gpu, apply, choose, nvml_gpus, visible_gpus, worker_position

FAKE_GPUS = Path(__file__).parent / "fake_gpus"
A, B, C = (Gpu(i, f"GPU-{c * 4}1111-0000", f"Fake {i}", (9, 0)) for i, c in enumerate("abc"))


@pytest.mark.parametrize(
    ("visible", "expected"),
    [
        (None, [A, B, C]),
        ("1,0", [B, A]),
        ("GPU-bbbb1111-0000", [B]),
        ("bbbb", [B]),  # a UUID prefix, as CUDA accepts
        ("0,GPU-cccc", [A, C]),
        ("", []),  # an empty variable hides every GPU
        ("0,7,1", [A]),  # CUDA stops at the first entry that matches nothing
    ],
)
def test_visible_gpus_follow_cuda_visible_devices(visible: str | None, expected: list[Gpu]) -> None:
    assert visible_gpus([A, B, C], visible) == expected


def test_mig_instances_are_refused() -> None:
    with pytest.raises(DeviceError, match="MIG instance"):
        visible_gpus([A], "MIG-123")


def test_single_process_takes_gpu_index() -> None:
    choice = choose([A, B], gpu_index=1, gpu_index_source="--slm-gpu-index", worker=None)
    assert choice.gpu == B and choice.visible_index == 1 and choice.reason == "--slm-gpu-index 1"
    assert choose([A, B], gpu_index=0, gpu_index_source=None, worker=None).gpu == A


def test_gpu_index_out_of_range_names_what_exists() -> None:
    with pytest.raises(DeviceError, match=r"--slm-gpu-index 2 is out of range: CUDA_VISIBLE_DEVICES='0,1' shows 2"):
        choose([A, B], gpu_index=2, gpu_index_source="--slm-gpu-index", worker=None, cuda_visible_devices="0,1")


def test_each_xdist_worker_takes_its_own_gpu() -> None:
    picks = [choose([A, B, C], gpu_index=0, gpu_index_source=None, worker=(i, 3)).gpu for i in range(3)]
    assert picks == [A, B, C]


def test_more_workers_than_gpus_is_an_error() -> None:
    with pytest.raises(DeviceError, match=r"-n 3 starts 3 pytest-xdist workers, but NVML shows 2 GPU\(s\)"):
        choose([A, B], gpu_index=0, gpu_index_source=None, worker=(2, 3))


def test_gpu_index_with_xdist_is_an_error() -> None:
    with pytest.raises(DeviceError, match="picks one GPU for a single process"):
        choose([A, B], gpu_index=1, gpu_index_source="--slm-gpu-index", worker=(0, 2))


def test_no_gpu_is_the_cpu_and_an_explicit_gpu_is_an_error() -> None:
    assert choose([], gpu_index=0, gpu_index_source=None, worker=(1, 2)).kind == "cpu"
    with pytest.raises(DeviceError, match="shows no GPU"):
        choose([], gpu_index=1, gpu_index_source="--slm-gpu-index", worker=None)


def test_apply_narrows_the_process_to_the_chosen_uuid() -> None:
    env: dict[str, str] = {"CUDA_VISIBLE_DEVICES": "0,1"}
    apply(choose([A, B], gpu_index=1, gpu_index_source="--slm-gpu-index", worker=None), env)
    assert env == {"CUDA_VISIBLE_DEVICES": B.uuid, "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
    cpu: dict[str, str] = {}
    apply(choose([], gpu_index=0, gpu_index_source=None, worker=None), cpu)
    assert cpu == {}


def test_worker_position() -> None:
    assert worker_position(None) is None
    assert worker_position({"workerid": "gw2", "workercount": 3}) == (2, 3)


def test_nvml_inventory_from_the_fake_module(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(FAKE_GPUS))
    monkeypatch.delitem(sys.modules, "pynvml", raising=False)
    monkeypatch.setenv("SLM_FAKE_GPUS", "H100,H100")
    import pynvml

    gpus = nvml_gpus(pynvml)
    assert [(g.uuid, g.capability) for g in gpus] == [("GPU-fake-0000", (9, 0)), ("GPU-fake-0001", (9, 0))]
    monkeypatch.setenv("SLM_FAKE_GPUS", "")
    assert nvml_gpus(pynvml) == []


DEVICE_TESTS = """
def test_engine_sees_its_gpu(slm_engine, slm_device):
    import os
    if slm_device.gpu is not None:
        assert os.environ["CUDA_VISIBLE_DEVICES"] == slm_device.gpu.uuid

def test_latency(slm_runs, slm):
    from pytest_slm.measure.latency import latency_metrics
    slm.extend(latency_metrics(slm_runs.streaming(slm.workload("single")), "tpot"))
"""


def _models(slm_pytester, n: int) -> list[str]:  # type: ignore[no-untyped-def]
    """``n`` fake checkpoints with distinct names: one pytest-xdist group each."""
    out = []
    for i in range(n):
        path = slm_pytester.pytester.path / f"model-{i}"
        path.mkdir()
        for f in slm_pytester.checkpoint.iterdir():
            (path / f.name).write_bytes(f.read_bytes())
        out.append(str(path))
    return out


@pytest.mark.parametrize("workers", [2, 3])
def test_xdist_worker_i_uses_fake_gpu_i(slm_pytester, monkeypatch: pytest.MonkeyPatch, workers: int) -> None:
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(FAKE_GPUS), os.environ["PYTHONPATH"]]))
    monkeypatch.setenv("SLM_FAKE_GPUS", ",".join(["H100"] * workers))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    slm_pytester.pytester.makepyfile(DEVICE_TESTS)
    models = _models(slm_pytester, workers)
    result = slm_pytester.run("--models", *models, "--precision", "bf16", "fp16", "-n", str(workers), subprocess=True)
    result.assert_outcomes(passed=4 * workers)
    loads = [line.split() for line in slm_pytester.engine_log() if line.startswith("load")]
    assert len(loads) == 2 * workers  # each engine loaded once
    by_worker: dict[str, set[str]] = {}
    for fields in loads:
        kv = dict(f.split("=", 1) for f in fields[2:])
        assert kv["device"] == kv["visible"] == f"GPU-fake-{int(kv['worker'].removeprefix('gw')):04d}"
        by_worker.setdefault(kv["worker"], set()).add(fields[1].rsplit("-", 1)[0])  # model of this engine
    # every worker got work, and each model (both precisions) stayed on one worker
    assert len(by_worker) == workers and all(len(models) == 1 for models in by_worker.values())
    records = slm_pytester.results()["records"]
    assert len({(r["model"], r["precision"]) for r in records}) == 2 * workers


def test_more_workers_than_fake_gpus_fails_clearly(slm_pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(FAKE_GPUS), os.environ["PYTHONPATH"]]))
    monkeypatch.setenv("SLM_FAKE_GPUS", "H100,H100")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    slm_pytester.pytester.makepyfile(DEVICE_TESTS)
    result = slm_pytester.run("--models", *_models(slm_pytester, 3), "-n", "3", subprocess=True)
    assert result.ret != 0
    assert any("-n 3 starts 3 pytest-xdist workers, but NVML shows 2 GPU(s)" in line for line in result.outlines)


def test_cpu_xdist_runs_one_engine_per_worker(slm_pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLM_FAKE_GPUS", "")
    slm_pytester.pytester.makepyfile(DEVICE_TESTS)
    result = slm_pytester.run("--models", *_models(slm_pytester, 2), "-n", "2", subprocess=True)
    result.assert_outcomes(passed=4)
    workers = {dict(f.split("=", 1) for f in line.split()[2:])["worker"] for line in slm_pytester.engine_log()}
    assert workers == {"gw0", "gw1"}
    # the header says what sharing the CPU does to timings
    result.stdout.fnmatch_lines(["slm: 2 xdist workers: engines that run on the CPU share its cores*"])


def test_gpu_index_1_serves_every_cell_and_files_baselines_under_that_gpu(
    slm_pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The original bug: the second model × precision of ``--slm-gpu-index 1`` on a 2-GPU machine
    failed, and baselines were filed under GPU 0's name."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(FAKE_GPUS), os.environ["PYTHONPATH"]]))
    monkeypatch.setenv("SLM_FAKE_GPUS", "NVIDIA A100-SXM4-80GB,NVIDIA H100 80GB HBM3")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    slm_pytester.pytester.makepyfile(DEVICE_TESTS)
    baselines = slm_pytester.pytester.path / "baselines"
    result = slm_pytester.run(
        "--precision", "bf16", "fp16", "--slm-gpu-index", "1", "--slm-save-baseline",
        "--slm-baseline-dir", str(baselines), subprocess=True,
    )  # fmt: skip
    result.assert_outcomes(passed=4)
    loads = [line for line in slm_pytester.engine_log() if line.startswith("load")]
    assert len(loads) == 2 and all("device=GPU-fake-0001 visible=GPU-fake-0001" in line for line in loads)
    (fingerprint,) = [d.name for d in baselines.iterdir() if d.is_dir()]
    assert fingerprint.startswith("nvidia-h100-80gb-hbm3-x2__"), fingerprint
    engines = slm_pytester.results()["environment"]["engines"]
    assert {e["device_choice"]["gpu_name"] for e in engines.values()} == {"NVIDIA H100 80GB HBM3"}


def test_auto_workers_is_one_per_visible_gpu(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_slm.plugin import pytest_xdist_auto_num_workers

    monkeypatch.syspath_prepend(str(FAKE_GPUS))
    monkeypatch.delitem(sys.modules, "pynvml", raising=False)
    monkeypatch.setenv("SLM_FAKE_GPUS", "H100,H100,H100")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,2")
    config = pytester.parseconfig()
    assert pytest_xdist_auto_num_workers(config) == 2
    monkeypatch.setenv("SLM_FAKE_GPUS", "")
    assert pytest_xdist_auto_num_workers(config) is None  # CPU: xdist's own count
