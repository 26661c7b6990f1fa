#!/usr/bin/env bash
# The CUDA path in one command, for a GPU machine whose time is scarce: bootstrap with the CUDA
# vLLM (SLM_CUDA=1; SLM_WHEELHOUSE=DIR offline), then the bench matrix with NVML energy, one
# pytest run per precision in the order bf16 int4 fp8 int8, each under its own time limit and
# written to its own $OUT/<precision> (a slow or crashing step loses none of the others'
# results), then the raw NVML energy check. Results go to $OUT (default slm-results/gpu-check).
# Usage: scripts/gpu_check.sh [extra pytest args]     e.g. OUT=/tmp/out scripts/gpu_check.sh -x
#   SLM_PYTHON=PATH            use this Python as it is (a GPU runner image with torch and the CUDA
#                              vLLM already installed) instead of bootstrapping ./.venv.
#   SLM_GPU_PRECISIONS="..."   the precisions to run, in order (default: bf16 int4 fp8 int8).
#   SLM_GPU_STEP_TIMEOUT=SEC   time limit of each precision's run and of the energy check (default 1200).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
out="${OUT:-slm-results/gpu-check}"
if [[ -n "${SLM_PYTHON:-}" ]]; then
  py="$SLM_PYTHON"
  "$py" -c 'import torch, vllm, pytest_slm' \
    || { echo "gpu_check: SLM_PYTHON=$py cannot import torch, vllm and pytest_slm" >&2; exit 2; }
else
  SLM_CUDA=1 bash scripts/bootstrap.sh
  py=.venv/bin/python
fi
step_timeout="${SLM_GPU_STEP_TIMEOUT:-1200}"
read -r -a precisions <<<"${SLM_GPU_PRECISIONS:-bf16 int4 fp8 int8}"
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}" HF_DATASETS_OFFLINE="${HF_DATASETS_OFFLINE:-1}"
# vLLM's CUDA sampler imports FlashInfer on start unless told not to (seen with vllm 0.26.0 on an H200
# whose offline wheelhouse left flashinfer-python out): fall back to vLLM's own top-k/top-p sampler.
if ! "$py" -c 'import flashinfer' 2>/dev/null && [[ -z "${VLLM_USE_FLASHINFER_SAMPLER:-}" ]]; then
  echo "gpu_check: flashinfer is not installed: VLLM_USE_FLASHINFER_SAMPLER=0"
  export VLLM_USE_FLASHINFER_SAMPLER=0
fi
# Timing and energy first, then footprint, then the slower accuracy runs: a step that hits its
# time limit still leaves the figures a GPU runner is for (pytest runs files in the order given).
benches=(benches/test_latency.py benches/test_throughput.py benches/test_energy.py benches/test_footprint.py
         benches/test_checkpoint.py benches/test_roofline.py benches/test_accuracy.py benches/test_cost.py
         benches/test_microbench.py benches/test_serving.py)
for f in benches/test_*.py; do  # a bench file added later still runs, after these
  [[ " ${benches[*]} " == *" $f "* ]] || benches+=("$f")
done
mkdir -p "$out"
"$py" - <<'PY' | tee "$out/device.txt"
import json
from pytest_slm.devices import nvml_gpus
gpus = nvml_gpus()
print(json.dumps([g.__dict__ for g in gpus], default=str))
if not gpus:
    raise SystemExit("gpu_check: NVML sees no GPU here; this script is for a CUDA machine")
PY
status=0
summary=()
for precision in "${precisions[@]}"; do
  rc=0
  timeout -k 30 "$step_timeout" "$py" -m pytest "${benches[@]}" -p no:cacheprovider --slm-output "$out/$precision" \
    --precision "$precision" --slm-power-meter nvml -rs "$@" || rc=$?
  summary+=("$precision=$rc")
  [[ "$rc" == 0 ]] || status=$rc
done
rc=0
timeout -k 30 "$step_timeout" "$py" scripts/gpu_energy_check.py "$out/gpu_energy_check.json" || rc=$?
summary+=("energy-check=$rc")
[[ "$rc" == 0 ]] || status=$rc
# 124 (or 137) in a step's status is its time limit running out.
echo "gpu_check: results in $out; exit statuses: ${summary[*]}" | tee "$out/status.txt"
exit "$status"
