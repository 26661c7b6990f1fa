#!/usr/bin/env bash
# A/A with confirmations on the real engine: one session of the timing benches against an existing
# baseline directory, then up to N confirmations (--slm-confirm) of what did not pass, each pooled
# with the sessions before it. Prints each session's gate line and wall time. Do not commit while it
# runs: a confirmation pools sessions of the same commit only.
#
# Usage: scripts/aa_confirm.sh BASELINE_DIR [CONFIRMATIONS=2] [WORK_DIR=/tmp/slm-aa-confirm] [-- pytest args]
set -u
base=${1:?baseline directory}
confirmations=${2:-2}
work=${3:-/tmp/slm-aa-confirm}
shift $(( $# < 3 ? $# : 3 ))
[ "${1:-}" = "--" ] && shift
selection=("$@")
[ ${#selection[@]} -eq 0 ] && selection=(-k "test_latency or test_offline_throughput or test_footprint")
cd "$(dirname "$0")/.."
rm -rf "$work" && mkdir -p "$work" && cp -r "$base" "$work/base"  # the gate does not write, but keep the original apart
for i in $(seq 1 $((confirmations + 1))); do
  extra=()
  [ "$i" -gt 1 ] && extra=(--slm-confirm "$work/session$((i - 1)).json")
  start=$(date +%s)
  .venv/bin/python -m pytest benches "${selection[@]}" --slm-baseline-dir "$work/base" --slm-output "$work/out$i" \
    -p no:randomly -q "${extra[@]}" > "$work/log$i" 2>&1
  rc=$?
  echo "session $i: rc $rc, $(( $(date +%s) - start )) s; $(grep -E '^gate:' "$work/log$i" || echo 'no gate line')"
  cp "$work/out$i/results.json" "$work/session$i.json" 2>/dev/null || break  # nothing ran: nothing left to confirm
done
