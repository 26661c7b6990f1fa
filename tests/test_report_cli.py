"""`pytest-slm report`: merging results files, every output file against the input records, and the
compact table at the top of each run's report."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pytest_slm.analysis.merge import merge
from pytest_slm.cli import main
from tests.report_docs import cell, document, rec, write

SCRIPT = Path(sys.executable).parent / "pytest-slm"


@pytest.fixture
def two_precisions(tmp_path: Path) -> Path:
    records = cell("bf16", 0.05, 200.0, 0.5, 0.08, verdict="pass") + cell("int4", 0.04, 300.0, 0.4, 0.06)
    return write(tmp_path / "run1" / "results.json", document(records))


def run_cli(*args: str | Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_duplicates_are_counted_once(two_precisions: Path, tmp_path: Path) -> None:
    copy = write(tmp_path / "shard" / "results.json", json.loads(two_precisions.read_text()))
    merged = merge([two_precisions, copy])
    assert len(merged.records) == 16 and merged.duplicates == 16 and not merged.conflicts and not merged.errors


def test_a_conflict_is_reported_never_overwritten(two_precisions: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    doc = json.loads(two_precisions.read_text())
    doc["records"][0]["value"] = 0.07  # same identity, another value
    other = write(tmp_path / "other" / "results.json", doc)
    out_dir = tmp_path / "report"
    rc, out, err = run_cli("report", two_precisions, other, "--output-dir", out_dir, "--no-plots", capsys=capsys)
    assert rc == 0 and "1 conflict(s)" in out
    assert f"ttft_p50_s: 0.05 in {two_precisions} (kept) vs 0.07 in {other}" in err
    (conflict,) = json.loads((out_dir / "conflicts.json").read_text())
    assert conflict["kept_value"] == 0.05 and conflict["other_value"] == 0.07
    assert conflict["other_source"] == str(other) and conflict["identity"]["metric"] == "ttft_p50_s"
    complete = json.loads((out_dir / "complete_results.json").read_text())
    assert complete["conflicts"][0]["other_record"]["value"] == 0.07  # nothing lost
    assert [r["value"] for r in complete["records"] if r["metric"] == "ttft_p50_s" and "single" in r["test"]] == [
        0.05,
        0.04,
    ]
    assert "1 conflicting record(s)" in (out_dir / "executive_summary.md").read_text()


def test_a_confirmation_supersedes_the_session_it_confirmed(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    """A first session and two confirmations of one chain: each record comes from the latest session
    that measured it, whatever the input order, with nothing dropped; another chain, or the same
    run id on another commit, is still a conflict."""
    records = cell("bf16", 0.05, 200.0, 0.5, 0.08, verdict="inconclusive")
    first = write(tmp_path / "s1" / "results.json", document(records, git_commit="abc", run_id="r1"))

    def confirmation(session: int, value: float, **env: Any) -> dict[str, Any]:
        rerun = [dict(r, value=value, baseline={"verdict": "pass"}) for r in records if r["metric"] == "tpot_p50_s"]
        chain = {"results": "earlier.json", "first_run": "r1", "session": session}
        return document(rerun, **{"git_commit": "abc", "run_id": f"r{session}", "confirms": chain, **env})

    second = write(tmp_path / "s2" / "results.json", confirmation(2, 0.026))
    third = write(tmp_path / "s3" / "results.json", confirmation(3, 0.027))
    for order in ([first, second, third], [third, first, second], [second, third, first]):
        merged = merge(order)
        assert not merged.conflicts and len(merged.records) == len(records)
        (tpot,) = [r for r in merged.records if r["metric"] == "tpot_p50_s"]
        assert tpot["value"] == 0.027 and tpot["source"] == str(third) and tpot["baseline"]["verdict"] == "pass"
        assert sorted(x.session for x in merged.superseded) == [1, 2]
        assert all(x.kept_session > x.session for x in merged.superseded)
        assert {x.record["value"] for x in merged.superseded} | {0.027} == {0.025, 0.026, 0.027}  # none lost
    other_commit = write(tmp_path / "x" / "results.json", confirmation(2, 0.03, git_commit="def"))
    other_chain = write(
        tmp_path / "y" / "results.json", confirmation(2, 0.031, confirms={"first_run": "r9", "session": 2})
    )
    merged = merge([first, other_commit, other_chain])
    assert len(merged.conflicts) == 2 and not merged.superseded
    out_dir = tmp_path / "report"
    rc, out, _ = run_cli("report", third, first, second, "--output-dir", out_dir, "--no-plots", capsys=capsys)
    assert rc == 0 and "2 superseded by a confirmation" in out
    summary = (out_dir / "executive_summary.md").read_text()
    assert "## Confirmed by later sessions" in summary and "up to session 3" in summary
    assert len(json.loads((out_dir / "complete_results.json").read_text())["superseded"]) == 2


def test_workload_and_fingerprint_are_part_of_the_identity(two_precisions: Path, tmp_path: Path) -> None:
    doc = json.loads(two_precisions.read_text())
    for r in doc["records"]:
        r["value"] *= 2
    doc["environment"]["fingerprint"] = "cpu-other-x8__vllm-0.32__torch-2.13"
    other_machine = write(tmp_path / "m2" / "results.json", doc)
    merged = merge([two_precisions, other_machine])
    assert len(merged.records) == 32 and not merged.conflicts
    # older files have no fingerprint: treated as None, so the first file's records carry None
    assert {r["fingerprint"] for r in merged.records} == {None, "cpu-other-x8__vllm-0.32__torch-2.13"}


def test_corrupt_and_wrong_schema_inputs_are_named_and_the_rest_merges(  # type: ignore[no-untyped-def]
    two_precisions: Path, tmp_path: Path, capsys
) -> None:
    corrupt = write(tmp_path / "bad" / "results.json", '{"schema": "pytest-slm/1", "records": [')
    foreign = write(tmp_path / "foreign.json", {"schema": "pytest-benchmark/4", "benchmarks": []})
    bad_record = document([rec("bf16", "test_x", "x_s", 1.0), {"metric": "y_s", "value": "fast"}])
    partial = write(tmp_path / "partial" / "results.json", bad_record)
    out_dir = tmp_path / "report"
    args = ("report", two_precisions, corrupt, foreign, tmp_path / "missing", partial, "--output-dir", out_dir)
    rc, _, err = run_cli(*args, "--no-plots", capsys=capsys)
    assert rc == 1
    assert f"error: {corrupt}: not valid JSON" in err
    assert f"error: {foreign}: schema 'pytest-benchmark/4' is not a pytest-slm results file" in err
    assert f"error: {tmp_path / 'missing'}: no such file or directory" in err
    assert f"error: {partial}: record 1 has no metric name or no finite value; dropped" in err
    complete = json.loads((out_dir / "complete_results.json").read_text())
    assert len(complete["records"]) == 17 and len(complete["errors"]) == 4
    summary = (out_dir / "executive_summary.md").read_text()
    assert "## Inputs that could not be used" in summary and str(corrupt) in summary


def test_no_usable_input_writes_nothing(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    corrupt = write(tmp_path / "results.json", "not json")
    rc, _, err = run_cli("report", corrupt, "--output-dir", tmp_path / "out", capsys=capsys)
    assert rc == 2 and "nothing written" in err and not (tmp_path / "out").exists()


def test_output_files_match_the_input_records(two_precisions: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    out_dir = tmp_path / "report"
    rc, out, _ = run_cli("report", two_precisions.parent, "--output-dir", out_dir, "--no-plots", capsys=capsys)
    assert rc == 0
    for name in (
        "complete_results.json",
        "results_table.csv",
        "results_table.tex",
        "results_table.md",
        "summary_statistics.csv",
        "quantization_impact.csv",
        "executive_summary.md",
    ):
        assert f"wrote {out_dir / name}" in out
    records = json.loads(two_precisions.read_text())["records"]
    complete = json.loads((out_dir / "complete_results.json").read_text())
    assert [{k: v for k, v in r.items() if k not in ("source", "fingerprint")} for r in complete["records"]] == records
    assert complete["inputs"][0]["path"] == str(two_precisions) and complete["inputs"][0]["records"] == 16

    table = {row["precision"]: row for row in read_csv(out_dir / "results_table.csv")}
    assert float(table["bf16"]["ttft_p50_ms"]) == pytest.approx(50.0)  # the single-stream record, in ms
    assert float(table["int4"]["tpot_p50_ms"]) == pytest.approx(20.0)
    assert float(table["int4"]["output_tokens_per_s"]) == 300.0
    assert float(table["int4"]["weights_gb"]) == pytest.approx(0.27) and float(table["int4"]["peak_gb"]) == 3.4
    assert float(table["int4"]["slm_mc.acc"]) == 0.4  # acc is the task's headline metric, not acc_norm
    assert float(table["int4"]["retention_vs_bf16"]) == pytest.approx(0.8)
    assert table["bf16"]["gate_verdicts"] == "pass 1" and table["int4"]["gate_verdicts"] == "no baseline"
    assert "j_per_token" not in table["bf16"]  # no energy measured: no column
    md = (out_dir / "results_table.md").read_text()
    assert md.splitlines()[0].startswith("| model ") and "| int4 " in md
    tex = (out_dir / "results_table.tex").read_text()
    assert "\\begin{tabular}" in tex and "int4 & 40.0000 & 20.0000 & 300.0000" in tex

    stats = {(r["precision"], r["test"], r["metric"]): r for r in read_csv(out_dir / "summary_statistics.csv")}
    assert len(stats) == 16
    tps = stats[("bf16", "benches/t.py::test_offline_throughput[m-bf16]", "output_tokens_per_s")]
    assert float(tps["value"]) == 200.0 and float(tps["samples_mean"]) == 200.0 and tps["samples_count"] == "2"
    assert float(tps["samples_min"]) == 199.0 and float(tps["samples_std"]) == pytest.approx(math.sqrt(2))

    impact = {(r["variant"], r["metric"]): r for r in read_csv(out_dir / "quantization_impact.csv")}
    assert len(impact) == 8 and {r["precision"] for r in impact.values()} == {"int4"}
    acc = impact[("slm_mc", "slm_mc.acc")]
    assert float(acc["bf16_value"]) == 0.5 and float(acc["delta"]) == pytest.approx(-0.1)
    assert float(acc["ratio"]) == pytest.approx(0.8) and float(acc["retention"]) == pytest.approx(0.8)
    half = 1.959964 * math.hypot(0.08, 0.06)
    assert float(acc["delta_ci_low"]) == pytest.approx(-0.1 - half, rel=1e-5)
    assert float(acc["delta_ci_high"]) == pytest.approx(-0.1 + half, rel=1e-5)
    ttft = impact[("single", "ttft_p50_s")]  # lower is better: retention is bf16 ÷ int4
    assert float(ttft["ratio"]) == pytest.approx(0.8) and float(ttft["retention"]) == pytest.approx(1.25)
    assert ttft["delta_ci_low"] != ""  # from the per-repetition samples
    assert impact[("batch", "ttft_p50_s")]["delta_ci_low"] == ""  # no stderr, no samples: no interval

    summary = (out_dir / "executive_summary.md").read_text()
    assert "Inputs: 1 results file(s), 16 records (0 exact duplicate(s) counted once), 0 conflicting" in summary
    assert "| m       | int4        | 0.8          | 0.8          | 1.5 " in summary  # ratios against bf16
    assert "Pareto front" in summary and "- slm_mc: m · bf16, m · int4" in summary


def test_console_script_is_installed(two_precisions: Path, tmp_path: Path) -> None:
    proc = subprocess.run(
        [str(SCRIPT), "report", str(two_precisions), "--output-dir", str(tmp_path / "r"), "--no-plots"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "r" / "results_table.csv").exists()


THREE_PRECISIONS = """
import pytest
from pytest_slm.measure.latency import latency_metrics

def test_ttft(slm_runs, slm):
    slm.extend(latency_metrics(slm_runs.streaming(slm.workload("single")), "ttft"))

def test_tpot(slm_runs, slm):
    slm.extend(latency_metrics(slm_runs.streaming(slm.workload("single")), "tpot"))

def test_tps(slm_engine, slm):
    slm.record("output_tokens_per_s", 123.0, unit="token/s", higher_is_better=True)

def test_energy(slm_engine, slm):
    pytest.skip("no power meter here")
"""


def test_run_report_starts_with_the_compact_table_and_terminal_fits_30_lines(slm_pytester, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    summary = slm_pytester.pytester.path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    slm_pytester.pytester.makepyfile(THREE_PRECISIONS)
    result = slm_pytester.run("--precision", "bf16", "fp16", "int4")
    result.assert_outcomes(passed=9, skipped=3)
    md = (slm_pytester.output / "results.md").read_text()
    first_table = md[md.index("## Summary") :].split("\n\n")[1].splitlines()
    assert first_table[0].startswith("| model ") and len(first_table) == 5  # header, rule, 3 rows
    assert md.index("## Summary") < md.index("## tiny-model · bf16")  # detail tables follow
    fp16 = next(line for line in first_table if "| fp16 " in line)
    assert "| 50 " in fp16 and "| 20 " in fp16 and "| 123 " in fp16  # TTFT/TPOT p50 in ms, tok/s
    out = result.outlines
    start = next(i for i, line in enumerate(out) if "pytest-slm results" in line)
    end = next(i for i, line in enumerate(out) if i > start and line.startswith("====="))
    block = out[start:end]
    assert len(block) <= 30, "\n".join(block)
    assert any(line.startswith("| tiny-model ") and "| int4 " in line for line in block)
    assert "  3 × no power meter here" in block
    assert not any("## tiny-model · bf16" in line for line in block)
    step = summary.read_text()
    assert step.count("| tiny-model ") == 3 and "## tiny-model" not in step


PLOTS = (
    "latency_percentiles",
    "memory",
    "energy_per_token",
    "accuracy",
    "quantization_impact",
    "pareto_accuracy_throughput",
    "pareto_accuracy_energy",
    "latency_vs_output_tokens",
)


def test_plots_with_data_are_drawn_and_without_data_left_out_with_why(  # type: ignore[no-untyped-def]
    two_precisions: Path, tmp_path: Path, capsys
) -> None:
    doc = json.loads(two_precisions.read_text())
    doc["skipped"] = [{"test": "benches/test_energy.py::test_energy[m-bf16-single]", "reason": "no power meter here"}]
    write(two_precisions, doc)
    out_dir = tmp_path / "report"
    rc, out, _ = run_cli("report", two_precisions, "--output-dir", out_dir, capsys=capsys)
    assert rc == 0
    drawn = {"latency_percentiles", "memory", "accuracy", "quantization_impact", "pareto_accuracy_throughput"}
    for name in PLOTS:
        png, svg = out_dir / "plots" / f"{name}.png", out_dir / "plots" / f"{name}.svg"
        if name in drawn:
            assert png.read_bytes().startswith(b"\x89PNG") and png.stat().st_size > 5000, name
            assert "<svg" in svg.read_text()[:1000], name
        else:
            assert not png.exists() and not svg.exists(), name
    why_energy = "no energy measured: no j_per_output_token records (energy tests skipped: no power meter here)"
    assert f"plot left out: energy_per_token — {why_energy}" in out
    summary = (out_dir / "executive_summary.md").read_text()
    assert f"- left out: pareto_accuracy_energy — {why_energy}" in summary
    assert "- left out: latency_vs_output_tokens — every latency record has max_new_tokens=16" in summary
    assert "- plots/quantization_impact.png" in summary


def test_a_pareto_plot_whose_axis_was_voided_says_so(two_precisions: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    """The machine can void the throughput measurement: the accuracy-throughput plot is then left out
    with that reason, not "not recorded"."""
    doc = json.loads(two_precisions.read_text())
    for r in doc["records"]:
        if r["metric"] == "output_tokens_per_s":
            r.update(
                outcome="invalid", invalid_reasons=["the machine is 9.2 % faster than when the baseline was saved"]
            )
    write(two_precisions, doc)
    out_dir = tmp_path / "report"
    rc, out, _ = run_cli("report", two_precisions, "--output-dir", out_dir, capsys=capsys)
    assert rc == 0 and not (out_dir / "plots" / "pareto_accuracy_throughput.png").exists()
    assert (out_dir / "plots" / "accuracy.png").exists()
    why = "every output_tokens_per_s measurement was voided (invalid measurement: see results.md)"
    assert f"- left out: pareto_accuracy_throughput — {why}" in (out_dir / "executive_summary.md").read_text()
    assert f"plot left out: pareto_accuracy_throughput — {why}" in out


def test_energy_and_output_length_plots_once_there_is_data(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    records = []
    for tokens, file in ((16, "a"), (64, "b")):
        workload = {"workload": {"concurrency": 1, "max_new_tokens": tokens}}
        for precision, scale in (("bf16", 1.0), ("int8", 0.8)):
            records += [
                rec(precision, "test_e2e_latency", "e2e_p50_s", 0.02 * tokens * scale, variant="single", info=workload),
                rec(precision, "test_energy", "j_per_output_token", 0.5 * scale, variant=file, unit="J/token"),
                rec(precision, "test_offline_throughput", "output_tokens_per_s", 100 / scale, unit="token/s"),
                rec(precision, "test_accuracy", "t.acc", 0.5, variant="t", info={"task": "t", "metric": "acc"}),
            ]
    path = write(tmp_path / "results.json", document(records))
    rc, out, _ = run_cli("report", path, "--output-dir", tmp_path / "r", capsys=capsys)
    assert rc == 0
    assert float(read_csv(tmp_path / "r" / "results_table.csv")[1]["j_per_token"]) == 0.4  # measured: a column
    for name in ("energy_per_token", "pareto_accuracy_energy", "latency_vs_output_tokens"):
        assert (tmp_path / "r" / "plots" / f"{name}.png").stat().st_size > 5000
        assert f"plot left out: {name}" not in out


def test_several_machines_get_a_row_each(two_precisions: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    doc = json.loads(two_precisions.read_text())
    paths = [two_precisions]
    for fp in ("gpu-a", "gpu-b"):
        paths.append(
            write(tmp_path / fp / "results.json", {**doc, "environment": {**doc["environment"], "fingerprint": fp}})
        )
    rc, _, _ = run_cli("report", *paths, "--output-dir", tmp_path / "r", "--html", capsys=capsys)
    assert rc == 0
    rows = read_csv(tmp_path / "r" / "results_table.csv")
    assert [(r["fingerprint"], r["precision"]) for r in rows] == [
        ("unknown", "bf16"),
        ("unknown", "int4"),
        ("gpu-a", "bf16"),
        ("gpu-a", "int4"),
        ("gpu-b", "bf16"),
        ("gpu-b", "int4"),
    ]
    assert all(float(r["retention_vs_bf16"]) == pytest.approx(0.8 if r["precision"] == "int4" else 1) for r in rows)


def test_invalid_measurements_are_counted_and_never_headline(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    records = [
        rec(
            "bf16",
            "test_ttft",
            "ttft_p50_s",
            9.9,
            variant="single",
            outcome="invalid",
            baseline={"verdict": "invalid", "note": "invalid measurement: busy machine"},  # as the plugin writes it
            info={"workload": {"concurrency": 1}},
        ),
        rec("bf16", "test_itl", "itl_p50_s", 0.02, outcome="invalid"),  # invalid, no baseline to compare with
        rec("bf16", "test_itl", "itl_mean_s", 0.02, outcome="invalid", gated=False),  # a diagnostic: not judged
        # a confirmation's void window that kept the earlier run's verdict: counted as that verdict
        rec(
            "bf16",
            "test_e2e",
            "e2e_p50_s",
            0.9,
            outcome="invalid",
            baseline={"verdict": "pass", "stood": {"measured_in": "a.json", "note": ""}},
        ),
        rec("bf16", "test_ttft", "ttft_p50_s", 0.05, variant="batch", info={"workload": {"concurrency": 8}}),
        rec("bf16", "test_tpot", "tpot_p50_s", 0.02, baseline={"verdict": "regressed"}),
        rec("bf16", "test_tpot2", "tpot_p90_s", 0.03, baseline={"verdict": "pass"}),
    ]
    path = write(tmp_path / "results.json", document(records))
    assert run_cli("report", path, "-o", tmp_path / "r", "--no-plots", capsys=capsys)[0] == 0
    (row,) = read_csv(tmp_path / "r" / "results_table.csv")
    # the headline TTFT is the single-stream test's; it was voided, so the cell is empty and says why,
    # and the batch workload's valid 50 ms (another quantity) does not stand in for it
    assert row["ttft_p50_ms"] == ""
    assert row["invalid_figures"] == "ttft_p50_ms"
    assert row["gate_verdicts"] == "pass 2, regressed 1, invalid 2"  # each invalid gated record counted once
    headline = (tmp_path / "r" / "executive_summary.md").read_text().split("## Headline")[1].split("\n## ")[0]
    assert "| invalid " in headline and "9900" not in headline
    assert "no other test's figure stands in for it" in headline


def test_a_suite_without_the_headline_tests_takes_the_lowest_valid_concurrency(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    records = [
        rec(
            "bf16",
            "test_my_ttft",
            "ttft_p50_s",
            9.9,
            variant="c1",
            outcome="invalid",
            info={"workload": {"concurrency": 1}},
        ),
        rec("bf16", "test_my_ttft", "ttft_p50_s", 0.05, variant="c8", info={"workload": {"concurrency": 8}}),
        rec("bf16", "test_my_ttft", "ttft_p50_s", 0.07, variant="c16", info={"workload": {"concurrency": 16}}),
    ]
    path = write(tmp_path / "results.json", document(records))
    assert run_cli("report", path, "-o", tmp_path / "r", "--no-plots", capsys=capsys)[0] == 0
    (row,) = read_csv(tmp_path / "r" / "results_table.csv")
    assert float(row["ttft_p50_ms"]) == 50.0  # the valid record, though its concurrency is higher
    assert row["invalid_figures"] == ""


def test_throughput_column_is_the_offline_test_never_a_serving_level(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    """The serving sweep records output tokens/s at each load level too (c1 streams one request: a
    fraction of batch throughput); the compact table's column is the offline batch figure, and when that
    measurement was voided the cell says so instead of taking a serving level's figure (CI, 2026-11-29)."""
    serving = [
        rec("bf16", "test_serving", "output_tokens_per_s", 25.8, variant="c1", unit="token/s"),
        rec("bf16", "test_serving", "output_tokens_per_s", 95.0, variant="c8", unit="token/s"),
    ]
    offline = rec(
        "bf16",
        "test_offline_throughput",
        "output_tokens_per_s",
        178.3,
        unit="token/s",
        info={"workload": {"concurrency": 32}},
    )
    for outcome, expected, flagged in (("passed", "178.3", ""), ("invalid", "", "output_tokens_per_s")):
        out = tmp_path / outcome
        path = write(out / "results.json", document([*serving, {**offline, "outcome": outcome}]))
        assert run_cli("report", path, "-o", out / "r", "--no-plots", capsys=capsys)[0] == 0
        (row,) = read_csv(out / "r" / "results_table.csv")
        assert (row["output_tokens_per_s"], row["invalid_figures"]) == (expected, flagged)


def test_voided_energy_and_accuracy_read_invalid_not_unmeasured(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    """A throttled energy window or a voided accuracy run is a measurement that happened: the table says
    `invalid` (and keeps the J/token column), never '–' as if nothing had been measured."""
    records = [
        *cell("bf16", 0.05, 200.0, 0.5, 0.08),
        rec(
            "bf16", "test_energy", "j_per_output_token", 0.9, unit="J/token", higher_is_better=False, outcome="invalid"
        ),
    ]
    records = [{**r, "outcome": "invalid"} if r["metric"] == "slm_mc.acc" else r for r in records]
    path = write(tmp_path / "results.json", document(records))
    assert run_cli("report", path, "-o", tmp_path / "r", "--no-plots", capsys=capsys)[0] == 0
    (row,) = read_csv(tmp_path / "r" / "results_table.csv")
    assert row["j_per_token"] == "" and row["slm_mc.acc"] == ""
    assert row["invalid_figures"] == "j_per_token, slm_mc.acc"
    headline = (tmp_path / "r" / "executive_summary.md").read_text().split("## Headline")[1].split("\n## ")[0]
    header, _, bf16 = headline.strip().splitlines()[:3]
    cells = dict(zip([h.strip() for h in header.split("|")], [c.strip() for c in bf16.split("|")], strict=True))
    assert cells["J/token"] == "invalid" and cells["slm_mc"] == "invalid" and cells["out tok/s"] == "200"
