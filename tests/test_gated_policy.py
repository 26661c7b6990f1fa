"""The allow-list of gated figures: the list in docs/gates.md equals it, every figure the package and its
benches record is decided on purpose, and a user's own figure is gated only when its name says so."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from pytest_slm.compare import policy

REPO = Path(__file__).resolve().parents[1]
GATES_PAGE = REPO / "docs" / "gates.md"  # the gated-figure list moved from README.md with the gate's prose

#: every figure pytest-slm and its benches record, with whether the gate decides on it. A metric added
#: to the package must be added here too (see the scan below): the decision is made, not inherited.
GATED_BY_NAME: dict[str, bool] = {
    # latency (benches/test_latency.py, and each serving level)
    **{f"{k}_{s}_s": s in ("p50", "p99") for k in ("ttft", "tpot", "e2e") for s in ("p50", "p90", "p99", "mean")},
    "itl_p50_s": False,  # TPOT p50 on a steady decode
    "itl_p90_s": False,
    "itl_p99_s": True,
    "itl_mean_s": False,
    "engine_ttft_p50_s": False,
    "engine_tpot_p50_s": False,
    "ttft_client_over_engine": False,
    "tpot_client_over_engine": False,
    "first_token_delivery_p50_s": False,
    # throughput
    "output_tokens_per_s": True,
    "requests_per_s": False,
    "total_tokens_per_s": False,
    "batch_latency_p50_s": False,
    "output_tokens_per_s_over_bf16": False,
    "saturation_knee_requests": False,
    "saturated_output_tokens_per_s": False,
    "harness_offline_ratio": False,
    "harness_streaming_tpot_ratio": False,
    # serving
    "goodput_mlperf_server_rps": False,
    "goodput_ttft0.5_tpot0.03_rps": False,  # an SLO key with a dot: "*.*" must not catch it
    "server_ttft_mean_s": False,
    "ttft_client_over_server": False,
    "server_generation_tokens_over_client": False,
    "server_prompt_tokens_over_client": False,
    "client_loop_lag_p99_s": False,
    "send_skew_p99_s": False,
    "requests_cut_by_time_budget": False,
    "saturation_concurrency": False,
    "saturation_rate": False,
    "saturation_concurrency_goodput_rps": False,
    "saturation_rate_goodput_rps": False,
    # footprint and memory
    "engine_load_s": False,  # one cold-or-warm load per session: bound it with a threshold instead
    "checkpoint_bytes": True,
    "peak_rss_bytes": True,
    "weights_bytes": True,
    "kv_cache_bytes": True,
    "cuda_peak_allocated_bytes": True,
    "cuda_peak_allocated_excl_kv_bytes": True,
    "cuda_peak_reserved_bytes": True,
    "kv_cache_tokens": True,
    "kv_cache_bytes_per_token": True,
    "kv_cache_max_concurrency": False,  # kv_cache_tokens ÷ max_model_len
    # checkpoint
    "compression_ratio": True,
    "bits_per_parameter": True,
    "quantize_cache_hit": False,
    "quantize_s": False,
    "quantize_recorded_s": False,
    "quantized_cache_hit_s": False,
    "quantized_cache_miss_s": False,
    "weight_sparsity": False,
    "weight_sparsity_min_layer": False,
    "weight_sparsity_max_layer": False,
    "two_of_four_group_fraction": False,
    # roofline
    "memory_bandwidth_bytes_per_s": False,
    "decode_bytes_per_token": False,
    "roofline_tpot_s": False,
    "mbu": False,
    # energy
    "energy_j": False,
    "avg_power_w": False,
    "idle_power_w": False,
    "dynamic_energy_j": False,
    "j_per_output_token": True,
    "dynamic_j_per_output_token": False,
    "output_tokens_per_j": False,
    "j_per_request": False,
    "mwh_per_output_token": False,
    # cost
    "s_per_correct_answer": False,
    "usd_per_correct_answer": False,
    "usd_per_million_output_tokens": False,
    "j_per_correct_answer": False,
    "dynamic_j_per_correct_answer": False,
    # accuracy and perplexity
    "slm_mc.acc": True,
    "slm_mc.acc_norm": True,
    "gsm8k_local.exact_match.strict_match": True,
    "slm_ppl.word_perplexity": True,
    "slm_ppl.byte_perplexity": True,
    "slm_ppl.bits_per_byte": True,
    "slm_ppl.token_perplexity": True,
    "slm_mc.items_per_s": False,
    "slm_mc.acc.retention": False,
    # pytest-benchmark
    "benchmark_min_s": True,
    "benchmark_median_s": True,
    "benchmark_max_s": True,
    "benchmark_mean_s": False,
    "benchmark_stddev_s": False,
    # a user's own
    "rag.recall_at_5": True,
    "my_metric": False,
    "x_s": False,
}


@pytest.mark.parametrize("name", sorted(GATED_BY_NAME))
def test_each_figure_is_gated_or_not_on_purpose(name: str) -> None:
    assert policy.is_gated(name) is GATED_BY_NAME[name]


def _literal_metric_names() -> set[str]:
    """Metric names written as string literals where the package and benches build or record a figure."""
    call = re.compile(r"(?:\.record|\bMetric|\bmetric|\bm)\(\s*(?:name=)?[\"']([A-Za-z0-9_.]+)[\"']")
    ready = re.compile(r"\"(quantized_cache_(?:hit|miss)_s)\"")  # the name is chosen before the call
    found: set[str] = set()
    for path in [*(REPO / "pytest_slm").rglob("*.py"), *(REPO / "benches").glob("*.py")]:
        text = path.read_text(encoding="utf-8")
        found |= set(call.findall(text)) | set(ready.findall(text))
    return found


def test_every_recorded_figure_is_decided() -> None:
    found = _literal_metric_names()
    assert {"ttft_p50_s", "engine_load_s", "j_per_output_token", "kv_cache_max_concurrency"} <= found  # the scan works
    missing = sorted(found - set(GATED_BY_NAME))
    assert not missing, f"decide whether these are gated, in policy.GATED and GATED_BY_NAME: {missing}"


def _readme_lists() -> tuple[list[str], list[str]]:
    """docs/gates.md's gated patterns and its exceptions, in order, from the marked list."""
    text = GATES_PAGE.read_text(encoding="utf-8")
    block = re.search(r"<!-- gated-figures\b.*?-->\n(.*?)<!-- /gated-figures -->", text, re.S)
    assert block, "docs/gates.md lost its <!-- gated-figures --> list"
    items = re.split(r"^- ", block.group(1), flags=re.M)[1:]
    gated: list[str] = []
    exceptions: list[str] = []
    for item in items:
        # a pattern is a backticked run of name characters and '*'; `<task>.<metric>` is prose
        patterns = re.findall(r"`([a-z0-9_.*]+)`", item)
        (exceptions if item.startswith("except") else gated).extend(patterns)
    return gated, exceptions


def test_readme_lists_exactly_the_gated_patterns() -> None:
    gated, exceptions = _readme_lists()
    assert sorted(gated) == sorted(policy.GATED), (
        f"docs/gates.md lists but policy lacks: {sorted(set(gated) - set(policy.GATED))}; "
        f"policy has but docs/gates.md lacks: {sorted(set(policy.GATED) - set(gated))}"
    )
    assert sorted(exceptions) == sorted(policy.DIAGNOSTICS)
    assert len(gated) == len(set(gated))


def test_a_user_figure_is_gated_when_its_name_is_dotted(slm_pytester, tmp_path: Path) -> None:
    slm_pytester.pytester.makepyfile("""
def test_mine(slm_engine, slm):
    slm.record("rag.recall_at_5", 0.8, unit="1", higher_is_better=True, samples=[0.79, 0.8, 0.81])
    slm.record("my_metric", 2.0, unit="s", higher_is_better=False, samples=[1.9, 2.0, 2.1])
""")
    baselines = tmp_path / "baselines"
    slm_pytester.run("--slm-baseline-dir", str(baselines), "--slm-save-baseline").assert_outcomes(passed=1)
    (path,) = baselines.rglob("*.json")
    assert [k.rpartition("::")[2] for k in json.loads(path.read_text())["metrics"]] == ["rag.recall_at_5"]
    slm_pytester.run("--slm-baseline-dir", str(baselines)).assert_outcomes(passed=1)
    rows = {r["metric"]: r for r in slm_pytester.results()["records"]}
    assert rows["rag.recall_at_5"]["gated"] is True and rows["rag.recall_at_5"]["baseline"]["file"] == str(path)
    assert rows["my_metric"]["gated"] is False and not rows["my_metric"]["baseline"]
