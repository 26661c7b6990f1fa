"""Baselines end to end on the fake engine: save, compare, the session rule, workload identity,
concurrent saves, the save rule, invalid measurements, other fingerprints, corrupt files."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_slm.compare.baseline import BaselineError, BaselineStore

LATENCY = (Path(__file__).resolve().parents[1] / "benches" / "test_latency.py").read_text()
ARGS = ("-k", "test_tpot or test_ttft", "--slm-num-runs", "6")


def run(slm_pytester, baselines: Path, *extra: str):  # type: ignore[no-untyped-def]
    return slm_pytester.run(*ARGS, "--slm-baseline-dir", str(baselines), *extra)


def baseline_files(root: Path) -> list[Path]:
    return sorted(root.rglob("*.json"))


def verdicts(slm_pytester, metric_part: str = "") -> set[str]:  # type: ignore[no-untyped-def]
    return {
        (r["baseline"] or {}).get("verdict")
        for r in slm_pytester.results()["records"]
        if metric_part in r["metric"] and r["gated"]
    }


@pytest.fixture
def saved(slm_pytester, tmp_path: Path) -> Path:
    """A baseline holding three sessions (the gate's default minimum to call a regression)."""
    slm_pytester.pytester.makepyfile(LATENCY)
    root = tmp_path / "baselines"
    for _ in range(3):
        run(slm_pytester, root, "--slm-save-baseline").assert_outcomes(passed=4)
    return root


def test_save_writes_one_small_file_per_cell_with_sessions(saved: Path) -> None:
    (path,) = baseline_files(saved)
    assert path.parent.name == "tiny-model" and path.name == "bf16.json"
    fp = path.parent.parent.name  # fingerprint: device, engine, torch
    assert fp.startswith("cpu-") and "fake-engine" in fp and "__torch-" in fp
    data = json.loads(path.read_text())
    assert data["schema"] == "pytest-slm-baseline/2" and data["environment"]["versions"]
    keys = [k for k in data["metrics"] if k.endswith("::tpot_p50_s")]
    assert sorted(k.split("::")[1] for k in keys) == ["test_tpot[batch]", "test_tpot[single]"]
    entry = data["metrics"][keys[0]]
    assert entry["unit"] == "s" and entry["higher_is_better"] is False and len(entry["samples"]) == 6
    assert len(entry["sessions"]) == 3 and entry["workload"]["concurrency"] in (1, 8)
    assert not any(k.endswith(("_p90_s", "_mean_s")) for k in data["metrics"]), "diagnostics are not saved"


def test_aa_passes_and_reports_verdicts(slm_pytester, saved: Path) -> None:
    result = run(slm_pytester, saved)
    result.assert_outcomes(passed=4)
    assert verdicts(slm_pytester) == {"pass"}
    recs = [r for r in slm_pytester.results()["records"] if r["gated"]]
    assert all(r["baseline"]["file"].endswith("bf16.json") and r["baseline"]["rule"] == "sessions-t" for r in recs)
    result.stdout.fnmatch_lines(["*gate: 8 pass*", "*family: 8 gated comparison(s), each at alpha 0.05/8*"])


def test_slowdown_fails_exactly_the_regressed_tests(slm_pytester, saved: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLM_FAKE_TPOT_S", "0.025")  # +25 % per output token; TTFT unchanged
    result = run(slm_pytester, saved)
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines(["*tpot_p50_s regressed: baseline 0.02, current 0.025, ratio 1.25*bf16.json)*"])
    failed = {r["test"].split("::")[-1] for r in slm_pytester.results()["records"] if r["outcome"] == "failed"}
    assert failed == {"test_tpot[tiny-model-bf16-single]", "test_tpot[tiny-model-bf16-batch]"}


def test_one_saved_session_cannot_call_a_regression(slm_pytester, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    slm_pytester.pytester.makepyfile(LATENCY)
    root = tmp_path / "one"
    run(slm_pytester, root, "--slm-save-baseline").assert_outcomes(passed=4)
    monkeypatch.setenv("SLM_FAKE_TPOT_S", "0.025")
    run(slm_pytester, root).assert_outcomes(passed=4)
    assert verdicts(slm_pytester, "tpot") == {"inconclusive"}
    note = next(r["baseline"]["note"] for r in slm_pytester.results()["records"] if r["metric"] == "tpot_p50_s")
    assert "+25.0 % change" in note and "the gate needs 3" in note
    run(slm_pytester, root, "--slm-min-sessions", "1").assert_outcomes(passed=2, failed=2)


def test_tolerance_marker_and_option(slm_pytester, saved: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLM_FAKE_TPOT_S", "0.025")
    run(slm_pytester, saved, "--slm-tolerance", "0.3").assert_outcomes(passed=4)
    run(slm_pytester, saved, "--slm-no-compare").assert_outcomes(passed=4)
    assert all(r["baseline"] is None for r in slm_pytester.results()["records"])


def test_improvement_fails_only_on_request(slm_pytester, saved: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLM_FAKE_TTFT_S", "0.03")
    run(slm_pytester, saved).assert_outcomes(passed=4)
    assert verdicts(slm_pytester, "ttft") == {"improved"}
    run(slm_pytester, saved, "--slm-fail-on-improvement").assert_outcomes(passed=2, failed=2)


def test_other_workload_is_incomparable_not_a_verdict(slm_pytester, saved: Path) -> None:
    result = run(slm_pytester, saved, "--slm-batch-size", "16")
    result.assert_outcomes(passed=4)
    by_test = {(r["test"].split("[")[-1], r["metric"]): r["baseline"] for r in slm_pytester.results()["records"]}
    batch = by_test[("tiny-model-bf16-batch]", "tpot_p50_s")]
    assert batch["verdict"] == "incomparable" and batch["note"].startswith("concurrency was 8, is 16; ")
    assert by_test[("tiny-model-bf16-single]", "tpot_p50_s")]["verdict"] == "pass"
    assert any(
        line.startswith("incomparable: test_tpot[tiny-model-bf16-batch] tpot_p50_s concurrency was 8, is 16")
        for line in result.outlines
    )


def test_save_rule_keeps_regressions_out_unless_accepted(
    slm_pytester, saved: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (path,) = baseline_files(saved)
    key = next(k for k in json.loads(path.read_text())["metrics"] if k.endswith("::test_tpot[single]::tpot_p50_s"))
    monkeypatch.setenv("SLM_FAKE_TPOT_S", "0.025")
    result = run(slm_pytester, saved, "--slm-save-baseline")
    result.stdout.fnmatch_lines(
        ["*baseline not saved: 4 figure(s): its test failed (regressed); pass --slm-baseline-accept to accept it*"]
    )
    entry = json.loads(path.read_text())["metrics"][key]
    assert entry["value"] == pytest.approx(0.02) and len(entry["sessions"]) == 3
    run(slm_pytester, saved, "--slm-save-baseline", "--slm-baseline-accept")
    entry = json.loads(path.read_text())["metrics"][key]
    assert entry["value"] == pytest.approx(0.025) and len(entry["sessions"]) == 1  # a new history starts


INVALID_TEST = """
def test_measured_but_untrustworthy(slm_runs, slm):
    from pytest_slm.measure.latency import latency_metrics
    slm.extend(latency_metrics(slm_runs.streaming(slm.workload("single")), "tpot"))
    slm.invalid("warm-up not reached: made up for this test")
"""


def test_invalid_measurement_is_its_own_outcome(slm_pytester, tmp_path: Path) -> None:
    slm_pytester.pytester.makepyfile(INVALID_TEST)
    root = tmp_path / "b"
    result = slm_pytester.run("--slm-baseline-dir", str(root), "--slm-save-baseline")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*invalid measurement: warm-up not reached: made up for this test*",
            "*invalid: test_*::test_measured_but_untrustworthy*warm-up not reached*",
            "*baseline not saved: 2 figure(s): invalid measurement*",
        ]
    )
    recs = slm_pytester.results()["records"]
    assert {r["outcome"] for r in recs} == {"invalid"} and all(r["value"] > 0 for r in recs)
    assert "## Invalid measurements" in (slm_pytester.output / "results.md").read_text()
    assert not baseline_files(root)


def test_queueing_client_makes_latency_invalid(slm_pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    slm_pytester.pytester.makepyfile(LATENCY)
    # the fake engine stamps its first token 30 ms before the client sees it
    monkeypatch.setenv("SLM_FAKE_ENGINE_SKEW", "0.4")
    result = slm_pytester.run("-k", "test_ttft and single")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*invalid measurement: client-side queueing: the first token reached the client*"])


SAVER = """
import json, sys
from pathlib import Path
from pytest_slm.compare.baseline import BaselineStore
store = BaselineStore(Path(sys.argv[1]))
for i in range(40):
    store.update("fp", "m", "bf16", {}, {f"{sys.argv[2]}::k{i}": {"value": float(i), "unit": "s"}})
"""


def test_two_processes_saving_at_once_lose_nothing(tmp_path: Path) -> None:
    procs = [subprocess.Popen([sys.executable, "-c", SAVER, str(tmp_path), who]) for who in ("worker-a", "worker-b")]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    (path,) = baseline_files(tmp_path)
    keys = set(json.loads(path.read_text())["metrics"])
    assert keys == {f"{who}::k{i}" for who in ("worker-a", "worker-b") for i in range(40)}


def test_other_fingerprint_is_not_compared(slm_pytester, saved: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (path,) = baseline_files(saved)
    path.parent.parent.rename(saved / "nvidia-h100-80gb-hbm3-x1__vllm-0.32__torch-2.11")
    monkeypatch.setenv("SLM_FAKE_TPOT_S", "0.05")
    run(slm_pytester, saved).assert_outcomes(passed=4)
    notes = {r["baseline"]["note"] for r in slm_pytester.results()["records"] if r["baseline"]}
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


def test_a_corrupt_baseline_is_kept_aside_by_an_accepted_save(slm_pytester, saved: Path) -> None:
    (path,) = baseline_files(saved)
    path.write_text("{not json")
    args = ("--slm-save-baseline", "--slm-baseline-accept")
    run(slm_pytester, saved, *args).assert_outcomes(failed=4)  # compared against it: each test names it
    aside = path.with_name("bf16.json.corrupt")
    assert aside.read_text() == "{not json"  # kept, byte for byte, never merged into nor written over
    assert json.loads(path.read_text())["schema"] == "pytest-slm-baseline/2"  # a new history starts
    path.write_text("[]")
    run(slm_pytester, saved, *args).assert_outcomes(failed=4)
    assert aside.read_text() == "{not json" and path.with_name("bf16.json.corrupt.1").read_text() == "[]"


def test_store_moves_an_unreadable_file_aside_and_says_so(tmp_path: Path) -> None:
    store = BaselineStore(tmp_path)
    path = store.path("fp", "m", "bf16")
    path.parent.mkdir(parents=True)
    path.write_text('{"schema": "something-else/9"}')
    with pytest.raises(BaselineError, match=r"baseline file .*bf16\.json has schema 'something-else/9'.*corrupt"):
        store.load("fp", "m", "bf16")
    assert path.read_text() == '{"schema": "something-else/9"}'  # loading never moves it
    assert store.update("fp", "m", "bf16", {}, {"t::x_s": {"value": 1.0, "unit": "s"}}) == path
    (aside,) = store.set_aside
    assert aside.path == path and aside.aside == path.with_name("bf16.json.corrupt")
    assert aside.aside.read_text() == '{"schema": "something-else/9"}'
    message = aside.message()
    assert str(path) in message and str(aside.aside) in message and "something-else/9" in message
    loaded = store.load("fp", "m", "bf16")
    assert loaded is not None and list(loaded.entries) == ["t::x_s"]
    store.update("fp", "m", "bf16", {}, {"t::y_s": {"value": 2.0, "unit": "s"}})  # a readable file: merged
    assert len(store.set_aside) == 1 and sorted(store.load("fp", "m", "bf16").entries) == ["t::x_s", "t::y_s"]  # type: ignore[union-attr]


@pytest.mark.parametrize("model", ["..", ".", "", "/", "../x", "../../etc/passwd", "/abs/path", "a/../../b", "..\\x"])
def test_no_model_name_leaves_the_baselines_folder(tmp_path: Path, model: str) -> None:
    root = tmp_path / "baselines"
    store = BaselineStore(root)
    try:
        path = store.path("fp", model, "bf16")
    except BaselineError as exc:  # nothing left of the name to make a folder of: refused, naming it
        assert repr(model) in str(exc)
        return
    assert path.resolve().is_relative_to((root / "fp").resolve()) and path.parent.parent == root / "fp"
    store.update("fp", model, "bf16", {}, {"t::x_s": {"value": 1.0, "unit": "s"}})
    assert [p.relative_to(root) for p in baseline_files(tmp_path)] == [path.relative_to(root)]


@pytest.mark.parametrize(("fp", "precision"), [("..", "bf16"), ("fp", ".."), ("", "bf16"), ("fp", "")])
def test_fingerprint_and_precision_cannot_leave_it_either(tmp_path: Path, fp: str, precision: str) -> None:
    bad = fp if fp in ("..", "") else precision
    with pytest.raises(BaselineError, match=re.escape(repr(bad))):
        BaselineStore(tmp_path).path(fp, "m", precision)


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


def test_noisy_sessions_go_through_the_between_session_rule(
    slm_pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With per-repetition noise the verdicts come from the t prediction interval (not the noiseless
    exact branch): unchanged passes, +25 % per token regresses."""
    monkeypatch.setenv("SLM_FAKE_JITTER", "0.01")
    slm_pytester.pytester.makepyfile(LATENCY)
    root = tmp_path / "noisy"
    for _ in range(5):
        run(slm_pytester, root, "--slm-save-baseline").assert_outcomes(passed=4)
    run(slm_pytester, root).assert_outcomes(passed=4)
    recs = [r for r in slm_pytester.results()["records"] if r["gated"]]
    assert {r["baseline"]["rule"] for r in recs} == {"sessions-t"}
    tpot = next(r for r in recs if r["metric"] == "tpot_p50_s" and "single" in r["test"])
    assert tpot["info"]["se_log"] > 0 and tpot["baseline"]["n_baseline"] == 5
    assert tpot["baseline"]["verdict"] == "pass" and tpot["baseline"]["mde"] < 0.05
    monkeypatch.setenv("SLM_FAKE_TPOT_S", "0.025")
    run(slm_pytester, root).assert_outcomes(passed=2, failed=2)
    assert verdicts(slm_pytester, "tpot") == {"regressed"}


def test_accuracy_limit_change_is_incomparable(slm_pytester, tmp_path: Path) -> None:
    slm_pytester.pytester.makepyfile(
        "def test_accuracy(slm_accuracy, slm):\n    slm.extend(slm_accuracy.run('slm_mc').metrics)\n"
    )
    root = tmp_path / "acc"
    common = ("--slm-baseline-dir", str(root), "--slm-accuracy-tasks", "slm_mc", "--slm-num-fewshot", "0")
    slm_pytester.run(*common, "--slm-accuracy-limit", "8", "--slm-save-baseline", subprocess=True)
    slm_pytester.run(*common, "--slm-accuracy-limit", "6", subprocess=True).assert_outcomes(passed=1)
    acc = next(r for r in slm_pytester.results()["records"] if r["metric"] == "slm_mc.acc")
    assert acc["baseline"]["verdict"] == "incomparable" and "limit was 8, is 6" in acc["baseline"]["note"]
