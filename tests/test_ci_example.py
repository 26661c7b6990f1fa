"""The GitHub Actions example parses, and its jobs are wired the way docs/configs-and-ci.md says."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from pytest_slm.options import OPTIONS

WORKFLOW = Path(__file__).resolve().parents[1] / "examples" / "github-actions" / "slm-benchmarks.yml"


def load() -> dict[str, Any]:
    data = yaml.safe_load(WORKFLOW.read_text())
    assert isinstance(data, dict)
    return data


def step(job: dict[str, Any], uses: str) -> list[dict[str, Any]]:
    return [s for s in job["steps"] if str(s.get("uses", "")).startswith(uses)]


def test_triggers_and_jobs() -> None:
    data = load()
    on = data.get("on", data.get(True))  # YAML 1.1 reads a bare `on` as true
    assert {"pull_request", "workflow_dispatch"} <= set(on)
    assert on["workflow_dispatch"]["inputs"]["refresh_baselines"]["type"] == "boolean"
    jobs = data["jobs"]
    assert set(jobs) == {"bench", "report", "refresh-baselines"}
    assert jobs["report"]["needs"] == "bench" and jobs["report"]["if"] == "always()"
    assert jobs["refresh-baselines"]["needs"] == "bench"
    assert "workflow_dispatch" in jobs["refresh-baselines"]["if"]


def named(job: dict[str, Any], prefix: str) -> dict[str, Any]:
    (found,) = [s for s in job["steps"] if str(s.get("name", "")).startswith(prefix)]
    return found


def test_bench_matrix_runs_every_shard_once_with_the_gate() -> None:
    bench = load()["jobs"]["bench"]
    shards = bench["strategy"]["matrix"]["shard"]
    assert bench["strategy"]["fail-fast"] is False
    run = named(bench, "Benchmarks, gated")["run"]
    args = shlex.split(run.replace("${{ matrix.shard }}", "1"))
    n = int(args[args.index("--slm-shard") + 1].split("/")[1])
    assert shards == list(range(1, n + 1))
    flags = {o.flag for o in OPTIONS}
    used = {t for a in args for t in a.split() if t.startswith("--slm-")}  # also inside ${{ ... }} expressions
    assert used <= flags, used - flags  # every option the example uses exists
    assert "--slm-no-compare" not in used  # the gate compares with baselines/
    assert "--slm-models-config" in used and args[args.index("--slm-models-config") + 1] == "models/"
    assert "secrets.HF_TOKEN" in str(bench["steps"])


def test_venv_and_checkpoint_caches_are_keyed_on_the_bootstrap() -> None:
    bench = load()["jobs"]["bench"]
    caches = step(bench, "actions/cache@")
    paths = " ".join(str(c["with"]["path"]) for c in caches)
    assert ".venv" in paths and "~/.cache/pytest-slm" in paths and "~/.cache/huggingface" in paths
    for cache in caches:
        assert re.search(r"hashFiles\('scripts/bootstrap.sh', 'pyproject.toml'", cache["with"]["key"]), cache
    assert any("scripts/bootstrap.sh" in str(s.get("run", "")) for s in bench["steps"])


def test_results_are_uploaded_even_when_the_gate_fails() -> None:
    bench = load()["jobs"]["bench"]
    uploads = step(bench, "actions/upload-artifact@")
    results = next(u for u in uploads if "slm-results-shard-" in u["with"]["name"])
    assert results["if"] == "always()" and "shard-${{ matrix.shard }}" in results["with"]["path"]


def test_merge_job_uses_the_report_command() -> None:
    report = load()["jobs"]["report"]
    downloads = {d["with"]["pattern"]: d["with"]["path"] for d in step(report, "actions/download-artifact@")}
    assert downloads == {"slm-results-shard-*": "shards", "slm-confirm-shard-*": "confirmations"}
    runs = " ".join(str(s.get("run", "")) for s in report["steps"])
    # first sessions and their confirmations: the merge lets a confirmation's records supersede
    assert "pytest-slm report shards $([ -d confirmations ] && echo confirmations) --output-dir merged" in runs
    assert "GITHUB_STEP_SUMMARY" in runs
    # the files appended to the summary are ones the report writes
    from pytest_slm.analysis import build as report

    source = Path(report.__file__).read_text()
    for name in re.findall(r"merged/(\S+\.md)", runs):
        assert f'"{name}"' in source, name


def test_refresh_job_opens_a_pull_request_with_the_merged_baselines() -> None:
    job = load()["jobs"]["refresh-baselines"]
    (download,) = step(job, "actions/download-artifact@")
    assert download["with"]["merge-multiple"] is True and download["with"]["path"] == "baselines"
    (pr,) = step(job, "peter-evans/create-pull-request@")
    assert pr["with"]["add-paths"] == "baselines/"
    assert job["permissions"] == {"contents": "write", "pull-requests": "write"}
    bench = load()["jobs"]["bench"]
    run = named(bench, "Benchmarks, gated")["run"]
    assert "--slm-save-baseline --slm-baseline-accept" in run and "inputs.refresh_baselines" in run
    # one saved session cannot gate a timing: the refresh saves as many as the gate needs, each a session
    from pytest_slm.compare.rules import MIN_SESSIONS

    more = named(bench, "Refresh, sessions")
    assert more["if"] == "${{ inputs.refresh_baselines }}" and "--slm-save-baseline" in more["run"]
    sessions = re.search(r"for i in ([\d ]+); do", more["run"])
    assert sessions is not None and 1 + len(sessions.group(1).split()) >= MIN_SESSIONS
    assert "--slm-baseline-accept" not in more["run"]  # the later sessions of a refresh join the first one's history


def test_confirmation_reruns_the_same_shard_with_the_first_sessions_results() -> None:
    """The pull request's verdict is the confirmations': the gate step may fail on its own only when
    there is no confirmation (a refresh), and each confirmation pools the same shard's sessions."""
    bench = load()["jobs"]["bench"]
    gate, confirm = named(bench, "Benchmarks, gated"), named(bench, "Confirm what did not pass")
    assert gate["id"] == "gate" and gate["continue-on-error"] == "${{ !inputs.refresh_baselines }}"
    assert confirm["if"] == "${{ !inputs.refresh_baselines }}" and "continue-on-error" not in confirm
    assert int(confirm["env"]["SLM_CONFIRMATIONS"]) >= 1
    first = shlex.split(gate["run"].replace("${{ matrix.shard }}", "1"))
    (line,) = [x for x in confirm["run"].replace("\\\n", " ").splitlines() if "-m pytest benches" in x]
    cmd = shlex.split(line.replace("${{ matrix.shard }}", "1"))
    assert first[first.index("--slm-output") + 1] == "slm-results/shard-1"
    assert "previous=slm-results/shard-${{ matrix.shard }}/results.json" in confirm["run"]
    assert cmd[cmd.index("--slm-confirm") + 1] == "$previous"
    for flag in ("--slm-models-config", "--slm-shard"):
        assert cmd[cmd.index(flag) + 1] == first[first.index(flag) + 1], flag
    assert cmd[cmd.index("--slm-output") + 1] == "$out"  # its own folder: no session's file is overwritten
    uploads = [u["with"]["name"] for u in step(bench, "actions/upload-artifact@")]
    assert "slm-confirm-shard-${{ matrix.shard }}" in uploads


FAKE_PYTEST = """#!/usr/bin/env bash
# stands in for `.venv/bin/python -m pytest`: logs what it was given, and exits as $STATUSES says (one
# status per call; "crash" exits 2 and "none" (nothing left to confirm) exits 0, both writing no results.json)
out= ; confirm=
while [ $# -gt 0 ]; do
  case "$1" in --slm-output) out=$2; shift ;; --slm-confirm) confirm=$2; shift ;; esac
  shift
done
n=$(( $(wc -l < calls.log 2>/dev/null || echo 0) + 1 ))
echo "$confirm -> $out" >> calls.log
status=$(echo "$STATUSES" | cut -d, -f"$n")
[ "$status" = crash ] && exit 2
[ "$status" = none ] && exit 0
mkdir -p "$out" && echo '{"records": []}' > "$out/results.json"
exit "$status"
"""


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")
@pytest.mark.parametrize(
    ("statuses", "calls", "rc"),
    [
        ("none", 1, 0),  # the gate step settled everything: nothing to confirm
        ("0,none", 2, 0),  # the first confirmation settled what was left
        ("0,0", 2, 0),  # figures still inconclusive after SLM_CONFIRMATIONS: not a failure
        ("1,0", 2, 0),  # a regression the second confirmation does not bear out
        ("1,1", 2, 1),  # confirmed twice: red
        ("crash", 1, 2),  # a crash leaves nothing to pool: red at once
    ],
)
def test_the_confirmation_loop_pools_each_session_and_stops(tmp_path: Path, statuses: str, calls: int, rc: int) -> None:
    """The step's shell, run with a stand-in for pytest: each confirmation pools the one before,
    the loop stops when nothing is left to confirm, and its exit status is the last run's."""
    confirm = named(load()["jobs"]["bench"], "Confirm what did not pass")
    script = confirm["run"].replace("${{ matrix.shard }}", "1")
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    fake = tmp_path / ".venv" / "bin" / "python"
    fake.write_text(FAKE_PYTEST)
    fake.chmod(0o755)
    (tmp_path / "slm-results" / "shard-1").mkdir(parents=True)
    (tmp_path / "slm-results" / "shard-1" / "results.json").write_text('{"records": []}')
    env = {"PATH": os.environ["PATH"], "STATUSES": statuses, "SLM_CONFIRMATIONS": confirm["env"]["SLM_CONFIRMATIONS"]}
    shell = ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c"]  # how GitHub Actions runs a `run:` step
    done = subprocess.run([*shell, script], cwd=tmp_path, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == rc, done.stderr
    log = (tmp_path / "calls.log").read_text().splitlines()
    expected = [
        "slm-results/shard-1/results.json -> slm-confirm/shard-1/session-2",
        "slm-confirm/shard-1/session-2/results.json -> slm-confirm/shard-1/session-3",
    ]
    assert log == expected[:calls]
    assert int(env["SLM_CONFIRMATIONS"]) == 2  # the cases above assume two confirmations at most


#: stands in for `.venv/bin/python` in the example's steps: the real plugin on the fake engine, with the
#: example's model-config and shard flags dropped (the fake engine's checkpoint is the whole matrix)
REAL_PYTEST = """#!/usr/bin/env bash
args=() ; skip=0
for a in "$@"; do
  if [ "$skip" = 1 ]; then skip=0; continue; fi
  case "$a" in -m|pytest|benches) continue ;; --slm-models-config|--slm-shard) skip=1; continue ;; esac
  args+=("$a")
done
exec {python} -m pytest test_user.py {base} "${{args[@]}}"
"""


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")
def test_the_actions_loop_with_the_real_plugin_stays_red_on_failures_without_gated_figures(slm_pytester) -> None:  # type: ignore[no-untyped-def]
    """The issue's reproduction, end to end: the gate step and the confirmation step of the example,
    the real plugin on the fake engine. A failed floor on a diagnostic figure, a setup error and a
    test that raised before recording are rerun by every confirmation and fail again: the step ends
    red. Before, the first confirmation deselected all three, exited 0 and the pull request went green."""
    import sys

    from tests.test_confirm import UNGATED_FAILURES

    cwd = slm_pytester.pytester.path
    slm_pytester.pytester.makepyfile(test_user=UNGATED_FAILURES)
    slm_pytester.output.mkdir(exist_ok=True)
    (cwd / "cache").mkdir(exist_ok=True)
    base = " ".join(shlex.quote(a) for a in slm_pytester.base_args() if a)
    base = base.replace(f"--slm-output {shlex.quote(str(slm_pytester.output))}", "")  # the steps name their own
    (cwd / ".venv" / "bin").mkdir(parents=True)
    fake = cwd / ".venv" / "bin" / "python"
    fake.write_text(REAL_PYTEST.format(python=shlex.quote(sys.executable), base=base))
    fake.chmod(0o755)
    bench = load()["jobs"]["bench"]
    gate = named(bench, "Benchmarks, gated")["run"].replace("${{ matrix.shard }}", "1")
    gate = re.sub(r"\$\{\{.*?\}\}", "", gate)  # the refresh expression: empty on a pull request
    confirm = named(bench, "Confirm what did not pass")
    env = {**os.environ, "SLM_CONFIRMATIONS": confirm["env"]["SLM_CONFIRMATIONS"]}
    shell = ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c"]
    first = subprocess.run([*shell, gate], cwd=cwd, env=env, capture_output=True, text=True, check=False)
    assert first.returncode == 1, first.stdout[-3000:]
    assert (cwd / "slm-results" / "shard-1" / "results.json").is_file()
    script = confirm["run"].replace("${{ matrix.shard }}", "1")
    done = subprocess.run([*shell, script], cwd=cwd, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 1, done.stdout[-3000:]
    for i in (2, 3):  # both confirmations ran the three tests again, and they failed again
        doc = json.loads((cwd / "slm-confirm" / "shard-1" / f"session-{i}" / "results.json").read_text())
        assert sorted(t["outcome"] for t in doc["tests"].values()) == ["error", "failed", "failed"]
        assert doc["verdict"]["status"] == "error"
