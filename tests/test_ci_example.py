"""The GitHub Actions example parses, and its jobs are wired the way the README says."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

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
    (download,) = step(report, "actions/download-artifact@")
    assert download["with"]["pattern"] == "slm-results-shard-*"
    runs = " ".join(str(s.get("run", "")) for s in report["steps"])
    assert "pytest-slm report shards/*/results.json --output-dir merged" in runs
    assert "GITHUB_STEP_SUMMARY" in runs
    # the files appended to the summary are ones the report writes
    from pytest_slm.analysis import report

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


def test_confirmation_reruns_the_same_shard_with_the_first_sessions_results() -> None:
    """The pull request's verdict is the confirmation's: the gate step may fail on its own only when
    there is no confirmation (a refresh), and the confirmation pools the same shard's first session."""
    bench = load()["jobs"]["bench"]
    gate, confirm = named(bench, "Benchmarks, gated"), named(bench, "Confirm what did not pass")
    assert gate["id"] == "gate" and gate["continue-on-error"] == "${{ !inputs.refresh_baselines }}"
    assert confirm["if"] == "${{ !inputs.refresh_baselines }}" and "continue-on-error" not in confirm
    first = shlex.split(gate["run"].replace("${{ matrix.shard }}", "1"))
    cmd = shlex.split(confirm["run"].replace("${{ matrix.shard }}", "1"))
    assert cmd[:3] == ["cp", "slm-results/shard-1/results.json", "first-session.json"]
    assert first[first.index("--slm-output") + 1] == "slm-results/shard-1"
    assert cmd[cmd.index("--slm-confirm") + 1] == "first-session.json"
    for flag in ("--slm-models-config", "--slm-shard"):
        assert cmd[cmd.index(flag) + 1] == first[first.index(flag) + 1], flag
    assert cmd[cmd.index("--slm-output") + 1] != "slm-results/shard-1"  # the first session's file stays
    uploads = [u["with"]["name"] for u in step(bench, "actions/upload-artifact@")]
    assert "slm-confirm-shard-${{ matrix.shard }}" in uploads
    # the merged report reads first sessions only (its pattern does not match the confirmations)
    (download,) = step(load()["jobs"]["report"], "actions/download-artifact@")
    assert download["with"]["pattern"] == "slm-results-shard-*"
