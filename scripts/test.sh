#!/usr/bin/env bash
# Runs pytest-slm's own tests: fast unit tests on the fake engine, then the integration tier
# on real vLLM (CPU here) with the embedded SmolLM2 model. Sets everything up on a fresh clone.
#
# Without arguments: the import layers (import-linter), then the unit tier in parallel (pytest-xdist,
# one worker a core: it is CPU-bound and nothing in it is timed against a limit), then the untimed
# integration modules in parallel, then the timed ones (marker `timed`) alone, since real-engine
# timing windows must not run beside anything else. Each step runs even when an earlier one
# failed; the exit status is the worst.
# With arguments: one pytest run over tests/ with them, e.g.  scripts/test.sh -m "not integration"
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/bootstrap.sh" --browser
cd "$root"
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}" HF_DATASETS_OFFLINE="${HF_DATASETS_OFFLINE:-1}"
pytest=(.venv/bin/python -m pytest tests -p no:cacheprovider -ra)
if [[ $# -gt 0 ]]; then
  exec "${pytest[@]}" "$@"
fi
status=0
step() {
  local t0=$SECONDS rc=0
  echo "[test.sh] $1" >&2
  shift
  "$@" || rc=$?
  echo "[test.sh] exit $rc after $((SECONDS - t0)) s" >&2
  ((rc > status)) && status=$rc
  return 0
}
if grep -q "^\[tool.importlinter\]" pyproject.toml; then
  step "import layers (import-linter, pyproject.toml [tool.importlinter])" .venv/bin/lint-imports
fi
step "unit tier (fake engine, pytester), in parallel" "${pytest[@]}" -m "not integration" -n "$(nproc)"
# the untimed integration modules (a server-less kv cache, shards, workers, tensor parallel, the wheel,
# the references) check what an engine serves and reports, not how fast: a module per worker, an
# engine per core (tests/integration/conftest.py binds them)
step "integration tier, untimed modules (real vLLM), in parallel" \
  "${pytest[@]}" -m "integration and not timed" -n "$(nproc)" --dist loadfile
step "integration tier, timed modules (real vLLM), alone" "${pytest[@]}" -m "integration and timed"
exit "$status"
