"""Baselines end to end on the fake engine: save, compare, regress, other fingerprints, corrupt files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

LATENCY = (Path(__file__).resolve().parents[1] / "benches" / "test_latency.py").read_text()
ARGS = ("-k", "test_tpot or test_ttft", "--slm-num-runs", "6")


def run(slm_pytester, baselines: Path, *extra: str):  # type: ignore[no-untyped-def]
    return slm_pytester.run(*ARGS, "--slm-baseline-dir", str(baselines), *extra)


def baseline_files(root: Path) -> list[Path]:
    return sorted(root.rglob("*.json"))


@pytest.fixture
def saved(slm_pytester, tmp_path: Path) -> Path:
    slm_pytester.pytester.makepyfile(LATENCY)
    root = tmp_path / "baselines"
    run(slm_pytester, root, "--slm-save-baseline").assert_outcomes(passed=4)
    return root


def test_save_writes_one_small_file_per_cell(saved: Path) -> None:
    (path,) = baseline_files(saved)
    assert path.parent.name == "tiny-model" and path.name == "bf16.json"
    fp = path.parent.parent.name  # fingerprint: device, engine, torch
    assert fp.startswith("cpu-") and "fake-engine" in fp and "__torch-" in fp
    data = json.loads(path.read_text())
    assert data["schema"] == "pytest-slm-baseline/1" and data["environment"]["versions"]
    keys = [k for k in data["metrics"] if k.endswith("::tpot_p50_s")]
    assert sorted(k.split("::")[1] for k in keys) == ["test_tpot[batch]", "test_tpot[single]"]
    entry = data["metrics"][keys[0]]
    assert entry["unit"] == "s" and entry["higher_is_better"] is False and len(entry["samples"]) == 6


def test_aa_passes_and_reports_verdicts(slm_pytester, saved: Path) -> None:
    run(slm_pytester, saved).assert_outcomes(passed=4)
    recs = slm_pytester.results()["records"]
    verdicts = {r["baseline"]["verdict"] for r in recs}
    assert verdicts == {"pass"}
    assert all(r["baseline"]["file"].endswith("bf16.json") for r in recs)


def test_slowdown_fails_exactly_the_regressed_tests(slm_pytester, saved: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLM_FAKE_TPOT_S", "0.025")  # +25 % per output token; TTFT unchanged
    result = run(slm_pytester, saved)
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines(
        [
            "*tpot_p50_s regressed: baseline 0.02, current 0.025, ratio of per-repetition medians 1.25*"
            "p = *tau = 5 %*bf16.json)*",
        ]
    )
    failed = {r["test"].split("::")[-1] for r in slm_pytester.results()["records"] if r["outcome"] == "failed"}
    assert failed == {"test_tpot[tiny-model-bf16-single]", "test_tpot[tiny-model-bf16-batch]"}


def test_tolerance_marker_and_option(slm_pytester, saved: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLM_FAKE_TPOT_S", "0.025")
    run(slm_pytester, saved, "--slm-tolerance", "0.3").assert_outcomes(passed=4)
    run(slm_pytester, saved, "--slm-no-compare").assert_outcomes(passed=4)
    assert all(r["baseline"] is None for r in slm_pytester.results()["records"])


def test_improvement_fails_only_on_request(slm_pytester, saved: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLM_FAKE_TTFT_S", "0.03")
    run(slm_pytester, saved).assert_outcomes(passed=4)
    assert {r["baseline"]["verdict"] for r in slm_pytester.results()["records"] if "ttft" in r["metric"]} == {
        "improved"
    }
    run(slm_pytester, saved, "--slm-fail-on-improvement").assert_outcomes(passed=2, failed=2)


def test_other_fingerprint_is_not_compared(slm_pytester, saved: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (path,) = baseline_files(saved)
    path.parent.parent.rename(saved / "nvidia-h100-80gb-hbm3-x1__vllm-0.32__torch-2.11")
    monkeypatch.setenv("SLM_FAKE_TPOT_S", "0.05")
    run(slm_pytester, saved).assert_outcomes(passed=4)
    notes = {r["baseline"]["note"] for r in slm_pytester.results()["records"]}
    (note,) = notes
    assert "baselines exist only for nvidia-h100-80gb-hbm3-x1__vllm-0.32__torch-2.11" in note


def test_corrupt_baseline_names_the_file_and_keeps_the_measurement(slm_pytester, saved: Path) -> None:
    (path,) = baseline_files(saved)
    path.write_text('{"schema": "something-else/9"}')
    result = run(slm_pytester, saved)
    result.assert_outcomes(failed=4)
    result.stdout.fnmatch_lines([f"*baseline file {path} has schema 'something-else/9'*"])
    recs = slm_pytester.results()["records"]
    assert len(recs) == 16 and all(r["value"] > 0 for r in recs)


def test_too_few_runs_is_inconclusive_not_pass(slm_pytester, saved: Path) -> None:
    result = slm_pytester.run("-k", "test_tpot", "--slm-num-runs", "3", "--slm-baseline-dir", str(saved))
    result.assert_outcomes(passed=2)
    assert {r["baseline"]["verdict"] for r in slm_pytester.results()["records"]} == {"inconclusive"}
    result.stdout.fnmatch_lines(["*inconclusive baseline comparison*", "*needs at least 5 repetitions*"])


def test_reports_comparison_table_and_dashboard_exports(
    slm_pytester, saved: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLM_FAKE_TPOT_S", "0.025")
    run(slm_pytester, saved)
    md = (slm_pytester.output / "results.md").read_text()
    assert "## Against the baseline" in md
    line = next(x for x in md.splitlines() if "| tpot_p50_s" in x and "regressed" in x)
    assert "+25.0 %" in line and "0.02 " in line and "0.025" in line
    smaller = json.loads((slm_pytester.output / "github-action-benchmark-customSmallerIsBetter.json").read_text())
    assert any(e["name"].endswith("tpot_p50_s") and e["unit"] == "s" for e in smaller)
    bmf = json.loads((slm_pytester.output / "bencher.json").read_text())
    assert bmf["tiny-model-bf16::test_tpot[tiny-model-bf16-single]"]["tpot-p50-s"]["value"] == pytest.approx(0.025)
