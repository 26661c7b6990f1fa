"""A green run says what it is: the passes as per-figure claims, the figures that passed without
evidence (inconclusive, no baseline, a baseline's figure not measured or skipped), a baseline too
young to gate timings, one machine-readable verdict, and ``--slm-strict`` failing what a team wants
failed. Inner sessions on the fake engine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import lines_with

LATENCY = (Path(__file__).resolve().parents[1] / "benches" / "test_latency.py").read_text()

SIZES = """
import os

import pytest


def test_sizes(slm_engine, slm):
    slm.record("checkpoint_bytes", 1000, unit="bytes", higher_is_better=False)
    if not os.environ.get("SLM_TEST_DROP"):
        slm.record("weights_bytes", 900, unit="bytes", higher_is_better=False)


def test_kv(slm_engine, slm):
    if os.environ.get("SLM_TEST_DROP"):
        pytest.skip("the KV-cache probe is gone")
    slm.record("kv_cache_bytes", 500, unit="bytes", higher_is_better=False)
"""


def gate_section(result: pytest.RunResult) -> list[str]:
    lines = result.outlines
    start = next(i for i, line in enumerate(lines) if "pytest-slm gate" in line)
    return lines[start + 1 :]


def test_a_young_baseline_never_passes_a_timing_and_says_so(slm_pytester, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """One saved session: the session rule cannot tell a change from the machine's drift, so its
    figures read inconclusive (not pass) and one line says how many sessions are needed."""
    slm_pytester.pytester.makepyfile(LATENCY)
    root = tmp_path / "baselines"
    args = ("-k", "test_ttft", "--slm-baseline-dir", str(root))
    slm_pytester.run(*args, "--slm-save-baseline").assert_outcomes(passed=2, deselected=8)
    result = slm_pytester.run(*args)
    result.assert_outcomes(passed=2, deselected=8)
    rows = [r["baseline"] for r in slm_pytester.results()["records"] if r["gated"] and r["baseline"]]
    assert rows and {r["verdict"] for r in rows if r["rule"] == "within-session"} == {"inconclusive"}
    section = "\n".join(gate_section(result))
    assert "timings cannot be called regressed until 3 sessions are saved: 1 saved" in section
    assert "none of these is evidence of no regression" in section
    verdict = slm_pytester.results()["verdict"]
    assert verdict["status"] == "pass" and verdict["without_evidence"]["inconclusive"] == len(rows)
    strict = slm_pytester.run(*args, "--slm-strict")
    strict.assert_outcomes(failed=2, deselected=8)
    assert lines_with(strict, "--slm-strict: ttft_p50_s inconclusive")


def test_no_baseline_is_said_and_strict_fails_it(slm_pytester, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    slm_pytester.pytester.makepyfile(test_sizes=SIZES)
    root = tmp_path / "baselines"
    result = slm_pytester.run("--slm-baseline-dir", str(root))
    result.assert_outcomes(passed=2)
    assert "without evidence: 3 no baseline: none of these is evidence of no regression" in "\n".join(
        gate_section(result)
    )
    assert "without evidence: 3 no baseline" in summary.read_text()  # the gate's lines reach the job summary
    assert "## What the gate could not tell" in (slm_pytester.output / "results.md").read_text()
    strict = slm_pytester.run("--slm-baseline-dir", str(root), "--slm-strict")
    strict.assert_outcomes(failed=2)
    assert lines_with(strict, "--slm-strict: weights_bytes: no baseline to compare with")
    # with the comparison turned off, nothing is "no baseline": the user asked for no gate
    off = slm_pytester.run("--slm-baseline-dir", str(root), "--slm-no-compare", "--slm-strict")
    off.assert_outcomes(passed=2)


def test_a_figure_the_baseline_holds_but_this_run_did_not_measure(slm_pytester, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A figure that stops being recorded, and a test that newly skips, are named, never a silent
    pass; --slm-strict fails both tests."""
    slm_pytester.pytester.makepyfile(test_sizes=SIZES)
    root = tmp_path / "baselines"
    slm_pytester.run("--slm-baseline-dir", str(root), "--slm-save-baseline").assert_outcomes(passed=2)
    monkeypatch.setenv("SLM_TEST_DROP", "1")
    result = slm_pytester.run("--slm-baseline-dir", str(root))
    result.assert_outcomes(passed=1, skipped=1)
    section = "\n".join(gate_section(result))
    assert "1 in the baseline but not measured, 1 in the baseline but skipped" in section
    doc = slm_pytester.results()
    assert {(u["metric"], u["why"]) for u in doc["unmeasured"]} == {("weights_bytes", "not recorded"),
                                                                     ("kv_cache_bytes", "skipped")}  # fmt: skip
    assert doc["verdict"]["without_evidence"] == {"not measured": 1, "newly skipped": 1}
    strict = slm_pytester.run("--slm-baseline-dir", str(root), "--slm-strict")
    strict.assert_outcomes(failed=2)
    assert lines_with(strict, "--slm-strict: weights_bytes is in the baseline")
    assert lines_with(strict, "--slm-strict: skipped (the KV-cache probe is gone), but the baseline holds 1 gated")
    assert json.loads((slm_pytester.output / "results.json").read_text())["verdict"]["status"] == "failed"
