#!/usr/bin/env bash
# The CUDA path in one command, for a GPU machine whose time is scarce: bootstrap with the CUDA
# vLLM (SLM_CUDA=1; SLM_WHEELHOUSE=DIR offline), then the bench matrix bf16 fp8 int8 int4 with
# NVML energy, written to $OUT (default slm-results/gpu-check), plus the raw NVML energy check.
# Usage: scripts/gpu_check.sh [extra pytest args]     e.g. OUT=/tmp/out scripts/gpu_check.sh -x
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
out="${OUT:-slm-results/gpu-check}"
SLM_CUDA=1 bash scripts/bootstrap.sh
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}" HF_DATASETS_OFFLINE="${HF_DATASETS_OFFLINE:-1}"
mkdir -p "$out"
.venv/bin/python - <<'PY' | tee "$out/device.txt"
import json
from pytest_slm.devices import nvml_gpus
gpus = nvml_gpus()
print(json.dumps([g.__dict__ for g in gpus], default=str))
if not gpus:
    raise SystemExit("gpu_check: NVML sees no GPU here; this script is for a CUDA machine")
PY
status=0
.venv/bin/python -m pytest benches -p no:cacheprovider --slm-output "$out" \
  --precision bf16 fp8 int8 int4 --slm-power-meter nvml -rs "$@" || status=$?
.venv/bin/python scripts/gpu_energy_check.py "$out/gpu_energy_check.json" || status=$?
echo "gpu_check: results in $out (pytest and energy-check exit status: $status)"
exit "$status"
