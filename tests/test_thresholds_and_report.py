"""Thresholds (marker and file), failure messages, and the JSON / markdown reports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_slm.results import SCHEMA
from pytest_slm.thresholds import Limit, ThresholdError, ThresholdTable

LATENCY_TESTS = """
import pytest
from pytest_slm.measure.latency import latency_metrics

def test_ttft(slm_runs, slm):
    slm.extend(latency_metrics(slm_runs.streaming(slm.workload("single")), "ttft"))

@pytest.mark.slm_threshold(tpot_p50_s="<= 0.01")
def test_tpot(slm_runs, slm):
    slm.extend(latency_metrics(slm_runs.streaming(slm.workload("single")), "tpot"))

def test_other(slm_engine, slm):
    slm.record("output_tokens_per_s", 123.0, unit="token/s", higher_is_better=True)
"""


def test_marker_breach_fails_that_test_only_with_value_limit_unit(slm_pytester) -> None:
    slm_pytester.pytester.makepyfile(LATENCY_TESTS)
    result = slm_pytester.run()
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*tpot_p50_s = 0.02 s breaches the limit <= 0.01 s (from @pytest.mark.slm_threshold on *test_tpot*",
        ]
    )
    records = slm_pytester.results()["records"]
    tpot = [r for r in records if r["metric"] == "tpot_p50_s"]
    assert tpot and tpot[0]["outcome"] == "failed" and tpot[0]["threshold"] == "<= 0.01"
    # the breached test's other metrics were still recorded
    assert {r["metric"] for r in records if r["test"].startswith("test_") and "tpot" in r["metric"]} == {
        "tpot_p50_s",
        "tpot_p90_s",
        "tpot_p99_s",
        "tpot_mean_s",
    }


def test_marker_limit_that_holds_passes(slm_pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLM_FAKE_TPOT_S", "0.005")
    slm_pytester.pytester.makepyfile(LATENCY_TESTS)
    slm_pytester.run().assert_outcomes(passed=3)


def test_thresholds_file_common_and_per_engine(slm_pytester) -> None:
    p = slm_pytester.pytester
    p.makepyfile(LATENCY_TESTS)
    p.path.joinpath("limits.toml").write_text(
        '[thresholds]\nttft_p50_s = "<= 1.0"\n[thresholds."tiny-model-bf16"]\noutput_tokens_per_s = ">= 500"\n'
    )
    result = slm_pytester.run("--slm-thresholds", "limits.toml", "--precision", "bf16", "fp16")
    # bf16: tpot (marker) and other (file, per engine) fail; fp16: only tpot fails
    result.assert_outcomes(passed=3, failed=3)
    result.stdout.fnmatch_lines(
        [
            "*output_tokens_per_s = 123 token/s breaches the limit >= 500 token/s (from limits.toml "
            "[[]thresholds.tiny-model-bf16[]] output_tokens_per_s)*",
        ]
    )
    ttft = [r for r in slm_pytester.results()["records"] if r["metric"] == "ttft_p50_s"]
    assert all(r["threshold"] == "<= 1" and r["outcome"] == "passed" for r in ttft)


def test_bad_limit_in_file_is_a_usage_error(slm_pytester) -> None:
    slm_pytester.pytester.makepyfile(LATENCY_TESTS)
    slm_pytester.pytester.path.joinpath("limits.toml").write_text("[thresholds]\nttft_p50_s = 0.25\n")
    result = slm_pytester.run("--slm-thresholds", "limits.toml")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*limit 0.25 needs an operator, e.g. '<= 0.25' or '>= 0.25'*"])


@pytest.mark.parametrize(
    ("text", "value", "holds"),
    [
        ("<=0.25", 0.25, True),
        ("< 0.25", 0.25, False),
        (">= 1e2", 100.0, True),
        ("> -1", -1.0, False),
    ],
)
def test_limit_parsing(text: str, value: float, holds: bool) -> None:
    assert Limit.parse(text, "here").holds(value) is holds


@pytest.mark.parametrize("bad", ["~0.3", "<= abc", "", "<="])
def test_limit_parse_errors(bad: str) -> None:
    with pytest.raises(ThresholdError, match="cannot parse limit"):
        Limit.parse(bad, "here")


def test_thresholds_file_without_table(tmp_path: Path) -> None:
    f = tmp_path / "t.toml"
    f.write_text("x = 1\n")
    with pytest.raises(ThresholdError, match=r"has no \[thresholds\] table"):
        ThresholdTable.load(f)


def test_results_json_schema_and_environment(slm_pytester) -> None:
    slm_pytester.pytester.makepyfile(LATENCY_TESTS)
    slm_pytester.run()
    doc = slm_pytester.results()
    assert doc["schema"] == SCHEMA
    env = doc["environment"]
    assert {"hardware", "versions", "git_commit", "run_profile", "engines"} <= set(env)
    assert env["run_profile"]["profile"] == "quick" and env["run_profile"]["num_runs"] == 3
    assert env["engines"]["tiny-model-bf16"]["checkpoint_sha256"]
    assert env["engines"]["tiny-model-bf16"]["engine"] == "fake"
    for rec in doc["records"]:
        assert {"test", "model", "precision", "metric", "value", "unit", "higher_is_better", "outcome"} <= set(rec)
        assert rec["model"] == "tiny-model" and rec["precision"] == "bf16"
    ttft = next(r for r in doc["records"] if r["metric"] == "ttft_p50_s")
    assert ttft["value"] == pytest.approx(0.05) and ttft["unit"] == "s" and ttft["higher_is_better"] is False
    assert len(ttft["samples"]) == 3 and ttft["n"] == 3


def test_markdown_table_per_cell_in_file_terminal_and_step_summary(slm_pytester, monkeypatch) -> None:
    summary = slm_pytester.pytester.path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    slm_pytester.pytester.makepyfile(LATENCY_TESTS)
    result = slm_pytester.run("--precision", "bf16", "fp16")
    md = (slm_pytester.output / "results.md").read_text()
    assert "## tiny-model · bf16" in md and "## tiny-model · fp16" in md
    assert any(line.startswith("| test_ttft[tiny-model-bf16]") and "| ttft_p50_s " in line for line in md.splitlines())
    result.stdout.fnmatch_lines(
        ["*pytest-slm results*", "| model * | precision * | TTFT p50 ms *", "| tiny-model*| fp16 *"]
    )
    # the job summary gets the compact table only; the detail tables stay in results.md
    step = summary.read_text()
    assert "| tiny-model " in step and "## tiny-model · bf16" not in step


def test_skips_are_reported_with_their_reason(slm_pytester) -> None:
    slm_pytester.pytester.makepyfile("""
import pytest
def test_energy(slm):
    pytest.skip("no power meter: NVML unavailable; no RAPL")
""")
    slm_pytester.run().assert_outcomes(skipped=1)
    skipped = slm_pytester.results()["skipped"]
    assert len(skipped) == 1 and skipped[0]["test"].endswith("::test_energy")
    assert skipped[0]["reason"] == "no power meter: NVML unavailable; no RAPL"


def test_records_of_a_test_that_raised_are_kept(slm_pytester) -> None:
    slm_pytester.pytester.makepyfile("""
def test_half(slm):
    slm.record("a_s", 1.0, unit="s", higher_is_better=False)
    raise RuntimeError("engine died")
""")
    slm_pytester.run().assert_outcomes(failed=1)
    (rec,) = slm_pytester.results()["records"]
    assert rec["metric"] == "a_s" and rec["outcome"] == "failed"


def test_no_report_written_when_nothing_was_measured(slm_pytester) -> None:
    slm_pytester.pytester.makepyfile("def test_plain():\n    assert True\n")
    slm_pytester.run().assert_outcomes(passed=1)
    assert not (slm_pytester.output / "results.json").exists()


def test_xdist_two_workers_lose_no_record(slm_pytester) -> None:
    slm_pytester.pytester.makepyfile(LATENCY_TESTS)
    slm_pytester.run("--precision", "bf16", "fp16")
    serial = sorted((r["test"].split("::")[-1], r["metric"]) for r in slm_pytester.results()["records"])
    (slm_pytester.output / "results.json").unlink()
    result = slm_pytester.run("--precision", "bf16", "fp16", "-n", "2", subprocess=True)
    result.assert_outcomes(passed=4, failed=2)
    parallel = sorted((r["test"].split("::")[-1], r["metric"]) for r in slm_pytester.results()["records"])
    assert parallel == serial and len(serial) == 18
    assert json.loads((slm_pytester.output / "results.json").read_text())["environment"]["engines"]


@pytest.mark.parametrize(("target", "expected_reps"), [("0.5", 3), ("0.001", 12)])
def test_adaptive_repetitions_stop_at_target_or_cap(slm_pytester, monkeypatch, target: str, expected_reps: int) -> None:
    monkeypatch.setenv("SLM_FAKE_JITTER", "0.2")
    slm_pytester.pytester.makepyfile(LATENCY_TESTS)
    slm_pytester.run("-k", "test_ttft", "--slm-target-ci", target, "--slm-max-runs", "12").assert_outcomes(passed=1)
    (rec,) = [r for r in slm_pytester.results()["records"] if r["metric"] == "ttft_p50_s"]
    assert rec["info"]["repetitions"] == expected_reps == len(rec["samples"])
    achieved = max(rec["info"]["achieved_rel_ci"].values())
    assert (achieved <= float(target)) if expected_reps == 3 else (achieved > float(target))
