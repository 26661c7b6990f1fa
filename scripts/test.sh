#!/usr/bin/env bash
# Runs pytest-slm's own tests: fast unit tests on the fake engine, then the integration tier
# on real vLLM (CPU here) with the embedded SmolLM2 model. Sets everything up on a fresh clone.
# Extra arguments go to pytest, e.g.  scripts/test.sh -m "not integration"
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/bootstrap.sh" --browser
cd "$root"
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}" HF_DATASETS_OFFLINE="${HF_DATASETS_OFFLINE:-1}"
exec .venv/bin/python -m pytest tests -p no:cacheprovider -ra "$@"
