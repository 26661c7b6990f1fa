"""pytest-benchmark interop: the ``benchmark`` fixture's stats as records; export to pytest-benchmark's
JSON read by its own ``pytest-benchmark compare``; import of its JSON; --benchmark-disable and xdist."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_slm.cli import main
from pytest_slm.interop.pytest_benchmark import (
    BenchmarkJSONError,
    benchmark_metrics,
    from_benchmark_json,
    to_benchmark_json,
)

pytest.importorskip("pytest_benchmark")


@pytest.fixture(autouse=True)
def not_an_xdist_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    """Inner sessions are not xdist workers even when this suite runs under -n (pytest-benchmark reads
    PYTEST_XDIST_WORKER and would disable itself)."""
    for var in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID"):
        monkeypatch.delenv(var, raising=False)


BENCH = """
import pytest
from pytest_slm.measure.latency import latency_metrics

def test_tokenize(slm_engine, slm, benchmark):
    ids = benchmark.pedantic(slm_engine.tokenizer.encode, args=("hello world " * 20,), rounds=7, iterations=3)
    assert len(ids) == 240

@pytest.mark.slm_threshold(benchmark_median_s="<= 1e-12")
def test_too_slow(slm_engine, slm, benchmark):
    benchmark.pedantic(slm_engine.tokenizer.encode, args=("x",), rounds=5)

def test_ttft(slm_runs, slm):
    slm.extend(latency_metrics(slm_runs.streaming(slm.workload("single")), "ttft"))

def test_plain_benchmark(benchmark):
    benchmark(sum, [1, 2, 3])
"""


def by_metric(records: list[dict], test: str) -> dict[str, dict]:  # type: ignore[type-arg]
    return {r["metric"]: r for r in records if test in r["test"]}


def test_benchmark_stats_become_gated_records(slm_pytester) -> None:
    slm_pytester.pytester.makepyfile(BENCH)
    result = slm_pytester.run()
    result.assert_outcomes(passed=3, failed=1)
    records = slm_pytester.results()["records"]
    tok = by_metric(records, "test_tokenize[")
    assert set(tok) == {f"benchmark_{s}_s" for s in ("min", "max", "mean", "median", "stddev")}
    median = tok["benchmark_median_s"]
    assert median["unit"] == "s" and median["higher_is_better"] is False and median["n"] == 7
    assert len(median["samples"]) == 7 and median["info"]["iterations"] == 3
    assert median["model"] == "tiny-model" and median["precision"] == "bf16"
    assert tok["benchmark_min_s"]["value"] <= median["value"] <= tok["benchmark_max_s"]["value"]
    assert tok["benchmark_min_s"]["samples"] == []  # extremes summarise all rounds at once
    # a limit on a benchmark statistic fails that test, with the figure
    result.stdout.fnmatch_lines(["*benchmark_median_s = * s breaches the limit <= 1e-12 s*"])
    assert by_metric(records, "test_too_slow")["benchmark_median_s"]["outcome"] == "failed"
    # a test without the slm fixture is pytest-benchmark's alone
    assert not [r for r in records if "test_plain_benchmark" in r["test"]]


def test_benchmark_disable_runs_once_and_says_no_records(slm_pytester) -> None:
    slm_pytester.pytester.makepyfile(BENCH)
    result = slm_pytester.run("--benchmark-disable", "-k", "tokenize or ttft")
    result.assert_outcomes(passed=2)
    records = slm_pytester.results()["records"]
    assert not [r for r in records if r["metric"].startswith("benchmark_")]
    assert by_metric(records, "test_ttft")  # the rest of the session is recorded as usual
    result.stdout.fnmatch_lines(
        ["*pytest-slm: 1 benchmark(s) not timed, no records*", "*test_tokenize*--benchmark-disable*ran once*"]
    )


def test_under_xdist_benchmark_disables_itself_and_nothing_is_garbled(slm_pytester) -> None:
    slm_pytester.pytester.makepyfile(BENCH)
    slm_pytester.pytester.makeini(
        "[pytest]\naddopts = --strict-markers\nfilterwarnings =\n    error\n"
        "    default:Benchmarks are automatically disabled because xdist plugin is active\n"
    )
    result = slm_pytester.run("-n", "2", "-k", "tokenize or ttft", subprocess=True)
    result.assert_outcomes(passed=2)
    assert result.ret == 0, result.stdout.str()[-3000:]
    records = slm_pytester.results()["records"]
    assert not [r for r in records if r["metric"].startswith("benchmark_")]
    ttft = by_metric(records, "test_ttft")
    assert ttft["ttft_p50_s"]["value"] == pytest.approx(0.05) and len(ttft["ttft_p50_s"]["samples"]) == 3
    result.stdout.fnmatch_lines(["*test_tokenize*disables itself under xdist*"])


def test_export_is_read_by_pytest_benchmark_compare(slm_pytester, tmp_path: Path) -> None:
    slm_pytester.pytester.makepyfile(BENCH)
    slm_pytester.run("-k", "tokenize or ttft or other")
    results = slm_pytester.output / "results.json"
    out = tmp_path / "0001_slm.json"
    assert main(["export", str(results), "--format", "pytest-benchmark", "-o", str(out)]) == 0
    doc = json.loads(out.read_text())
    names = {b["name"] for b in doc["benchmarks"]}
    assert "test_tokenize[tiny-model-bf16]" in names  # one entry per benchmark fixture, not per statistic
    assert "test_ttft[tiny-model-bf16]::ttft_p50_s" in names
    tok = next(b for b in doc["benchmarks"] if b["name"] == "test_tokenize[tiny-model-bf16]")
    assert len(tok["stats"]["data"]) == 7 and tok["extra_info"]["precision"] == "bf16"
    # pytest-benchmark's own command reads it (a file it cannot parse is only warned about: check the rows)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest_benchmark", "compare", str(out), "--columns", "min,median,rounds"],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Failed to load" not in proc.stdout + proc.stderr
    assert "test_tokenize[tiny-model-bf16]" in proc.stdout and "ttft_p50_s" in proc.stdout


def test_export_draws_pytest_benchmark_histogram(slm_pytester, tmp_path: Path) -> None:
    # find_spec, not import: importing pygal here disturbs later in-process pytester sessions
    if importlib.util.find_spec("pygal") is None:
        pytest.skip("pytest-benchmark's --histogram needs pygal (pip install pytest-benchmark[histogram])")
    slm_pytester.pytester.makepyfile(BENCH)
    slm_pytester.run("-k", "tokenize or ttft")
    out = tmp_path / "0001_slm.json"
    assert main(["export", str(slm_pytester.output), "-o", str(out)]) == 0
    proc = subprocess.run(
        [sys.executable, "-m", "pytest_benchmark", "compare", str(out), "--histogram", str(tmp_path / "hist")],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    svgs = list(tmp_path.glob("hist*.svg"))
    assert svgs and any("test_tokenize" in f.read_text() for f in svgs), proc.stdout


def test_import_round_trip_keeps_figures(slm_pytester, tmp_path: Path) -> None:
    slm_pytester.pytester.makepyfile(BENCH)
    slm_pytester.run("-k", "tokenize")
    original = by_metric(slm_pytester.results()["records"], "test_tokenize[")
    exported = tmp_path / "bench.json"
    assert main(["export", str(slm_pytester.output), "-o", str(exported)]) == 0
    assert main(["import-benchmark", str(exported), "-o", str(tmp_path / "imported")]) == 0
    back = json.loads((tmp_path / "imported" / "results.json").read_text())
    again = by_metric(back["records"], "test_tokenize[")
    for stat in ("min", "max", "mean", "median"):
        name = f"benchmark_{stat}_s"
        assert again[name]["value"] == pytest.approx(original[name]["value"])
    assert again["benchmark_median_s"]["samples"] == pytest.approx(original["benchmark_median_s"]["samples"])
    assert again["benchmark_median_s"]["model"] == "tiny-model"
    assert (tmp_path / "imported" / "results.md").exists()


def test_import_reads_pytest_benchmarks_own_json(pytester: pytest.Pytester, tmp_path: Path) -> None:
    pytester.makepyfile("def test_sum(benchmark):\n    benchmark(sum, range(100))\n")
    bench_json = tmp_path / "own.json"
    pytester.runpytest_subprocess(f"--benchmark-json={bench_json}").assert_outcomes(passed=1)
    doc = from_benchmark_json(json.loads(bench_json.read_text()), str(bench_json))
    rec = {r["metric"]: r for r in doc["records"]}
    assert rec["benchmark_median_s"]["n"] >= 1 and rec["benchmark_median_s"]["test"].endswith("test_sum")
    assert rec["benchmark_median_s"]["samples"]  # --benchmark-json includes the per-round data
    assert doc["environment"]["imported_from"]["format"] == "pytest-benchmark"


def test_bad_inputs_are_clear_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert main(["import-benchmark", str(bad), "-o", str(tmp_path / "x")]) == 2
    assert "is not JSON" in capsys.readouterr().err
    bad.write_text('{"records": 3}')
    assert main(["export", str(bad), "-o", str(tmp_path / "y.json")]) == 2
    assert "not a pytest-slm results document" in capsys.readouterr().err
    with pytest.raises(BenchmarkJSONError, match="not a pytest-benchmark JSON"):
        from_benchmark_json({"records": []}, "f.json")
    with pytest.raises(BenchmarkJSONError, match="lacks stats"):
        benchmark_metrics({"name": "t", "stats": {"min": 1.0}})


def test_non_time_records_are_left_out_of_the_export() -> None:
    rec = {"test": "t.py::test_x[m-bf16]", "unit": "token/s", "metric": "output_tokens_per_s", "value": 5.0}
    doc, left_out = to_benchmark_json({"records": [rec], "environment": {}})
    assert doc["benchmarks"] == [] and left_out == ["t.py::test_x[m-bf16]::output_tokens_per_s (token/s, None)"]


def test_the_export_says_whether_the_tree_was_dirty() -> None:
    """pytest-benchmark's ``commit_info.dirty`` comes from the run's git state, both ways."""
    for dirty in (True, False):
        env = {"git_commit": "abc", "git_dirty": dirty}
        doc, _ = to_benchmark_json({"records": [], "environment": env})
        assert doc["commit_info"]["dirty"] is dirty
        assert from_benchmark_json(doc, "x.json")["environment"]["git_dirty"] is dirty


MICROBENCH = (Path(__file__).resolve().parents[1] / "benches" / "test_microbench.py").read_text()


def test_microbench_file_records_both_benchmarks(slm_pytester) -> None:
    slm_pytester.pytester.makepyfile(test_microbench=MICROBENCH)
    slm_pytester.run().assert_outcomes(passed=2)
    records = slm_pytester.results()["records"]
    tok = by_metric(records, "test_tokenize_prompts")
    one = by_metric(records, "test_generate_one_token")
    assert tok["benchmark_median_s"]["n"] >= 5  # pytest-benchmark's own calibration: min_rounds 5
    assert one["benchmark_median_s"]["n"] == 3 == len(one["benchmark_median_s"]["samples"])  # --slm-num-runs 3
