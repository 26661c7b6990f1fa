#!/usr/bin/env bash
# Runs the benchmark suite (benches/) on the embedded default model and prints the report.
# Sets everything up on a fresh clone (venv, stack, model conversion); extra arguments go to
# pytest, e.g.  scripts/bench.sh --precision bf16 int4 --slm-profile full
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/bootstrap.sh"
cd "$root"
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}" HF_DATASETS_OFFLINE="${HF_DATASETS_OFFLINE:-1}"
exec .venv/bin/python -m pytest benches -p no:cacheprovider "$@"
