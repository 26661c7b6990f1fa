"""Serving mode through pytest: the benches run unchanged on the openai engine (fake server), a bad
endpoint fails only its tests and keeps every other record, the API key never reaches a report,
and the serving bench's levels, goodput, saturation point and client self-check."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("aiohttp")

from tests.conftest import REPO, SlmPytester, lines_with
from tests.fake_openai_server import FakeOpenAIServer

SECRET = "sk-live-DO-NOT-LEAK-42"
RECORD_FIRST = """
def test_first(slm):
    slm.record("recorded_before", 1.0, unit="1", higher_is_better=True)
"""


def bench(name: str) -> str:
    return (REPO / "benches" / name).read_text()


def outcomes(results: dict) -> dict[str, str]:  # type: ignore[type-arg]
    return {r["test"].split("::")[-1]: r["outcome"] for r in results["records"]}


def metrics_of(results: dict, test: str) -> dict[str, dict]:  # type: ignore[type-arg]
    return {r["metric"]: r for r in results["records"] if r["test"].endswith(test) and r.get("metric")}


def test_latency_benches_run_unchanged_against_a_server(slm_pytester: SlmPytester) -> None:
    slm_pytester.pytester.makepyfile(test_latency=bench("test_latency.py"))
    with FakeOpenAIServer(token_delay_s=0.003) as srv:
        result = slm_pytester.run("--slm-engine", "openai", "--slm-endpoint", srv.url, "test_latency.py")
    result.assert_outcomes(passed=10)
    data = slm_pytester.results()
    ttft = metrics_of(data, "test_ttft[tiny-model-bf16-single]")
    assert {"ttft_p50_s", "ttft_p99_s", "ttft_mean_s"} <= set(ttft)
    tpot = metrics_of(data, "test_tpot[tiny-model-bf16-batch]")["tpot_p50_s"]["value"]
    assert 0.002 < tpot < 0.05  # the fake's 3 ms per token, seen through HTTP
    cross = metrics_of(data, "test_engine_timing_crosscheck[tiny-model-bf16-single]")
    # the server's per-request metrics give the engine's TPOT; its first-token stamp is not on the wire
    assert "tpot_client_over_engine" in cross and "ttft_client_over_engine" not in cross
    assert any(r.get("test", "").endswith("[tiny-model-bf16-single]") for r in data["records"])
    # one streamed request per prompt, each asking for exactly 8 tokens with EOS ignored
    assert {(r["max_tokens"], r["ignore_eos"], r["stream"]) for r in srv.requests} == {(8, True, True)}
    # the engine's tally of where token counts came from is live: every request served is in the report
    tally = data["environment"]["engines"]["tiny-model-bf16"]["token_count_source"]
    assert set(tally) == {"usage"} and tally["usage"] >= len(srv.requests) - 1, tally


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("error500", "HTTP 500 Internal Server Error: 'internal kaboom: the fake engine fell over'"),
        ("malformed", "malformed SSE event after 1 chunks"),
        ("die_after", "HTTP 503 Service Unavailable: 'server is shutting down'"),
    ],
)
def test_a_bad_endpoint_fails_its_tests_and_keeps_other_records(
    slm_pytester: SlmPytester, mode: str, expected: str
) -> None:
    slm_pytester.pytester.makepyfile(test_a_first=RECORD_FIRST, test_latency=bench("test_latency.py"))
    with FakeOpenAIServer(mode=mode, die_after_requests=2) as srv:
        result = slm_pytester.run(
            "--slm-engine",
            "openai",
            "--slm-endpoint",
            srv.url,
            "test_a_first.py",
            "test_latency.py",
            "-k",
            "first or ttft",
        )
    outcome = result.parseoutcomes()
    assert outcome.get("passed") == 1 and outcome.get("failed") == 2, result.stdout.str()
    assert lines_with(result, expected), result.stdout.str()
    data = slm_pytester.results()
    assert metrics_of(data, "test_first")["recorded_before"]["value"] == 1.0
    assert lines_with(result, "FAILED test_latency.py::test_ttft[tiny-model-bf16-single]")


def test_a_refused_connection_errors_the_cell_and_keeps_other_records(slm_pytester: SlmPytester) -> None:
    from pytest_slm.engines.openai.server import free_port

    url = f"http://127.0.0.1:{free_port()}"
    slm_pytester.pytester.makepyfile(test_a_first=RECORD_FIRST, test_latency=bench("test_latency.py"))
    result = slm_pytester.run(
        "--slm-engine", "openai", "--slm-endpoint", url, "test_a_first.py", "test_latency.py", "-k", "first or ttft"
    )
    outcome = result.parseoutcomes()
    assert outcome.get("passed") == 1 and outcome.get("errors") == 2
    assert lines_with(result, f"GET {url}/v1/models: cannot connect")
    assert metrics_of(slm_pytester.results(), "test_first")["recorded_before"]["value"] == 1.0


def test_the_api_key_never_reaches_a_report_or_the_output(
    slm_pytester: SlmPytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MY_SERVER_KEY", SECRET)
    slm_pytester.pytester.makepyfile(test_latency=bench("test_latency.py"))
    with FakeOpenAIServer(api_key=SECRET) as srv:
        ok = slm_pytester.run(
            "--slm-engine", "openai", "--slm-endpoint", srv.url, "--slm-api-key-env", "MY_SERVER_KEY", "-k", "ttft"
        )
        ok.assert_outcomes(passed=2)
        facts = json.dumps(slm_pytester.results())
        srv.api_key = "rotated"  # now every request is refused, and the server echoes the key it got
        bad = slm_pytester.run(
            "--slm-engine", "openai", "--slm-endpoint", srv.url, "--slm-api-key-env", "MY_SERVER_KEY", "-k", "ttft"
        )
    assert bad.parseoutcomes().get("errors") == 2
    assert lines_with(bad, "HTTP 401") and lines_with(bad, "<redacted>")
    for run in (ok, bad):
        assert SECRET not in run.stdout.str() + run.stderr.str()
    for path in Path(slm_pytester.output).rglob("*"):
        if path.is_file():
            assert SECRET not in path.read_text(errors="replace"), path
    assert "MY_SERVER_KEY" in facts  # the variable's name is reported, never its value
    # the refused run writes its own results.json: two setup errors, which a confirmation runs again
    assert slm_pytester.results()["verdict"] == {"status": "error", "gate": {}, "tests": {"error": 2},
                                                 "without_evidence": {}}  # fmt: skip


def test_serving_levels_are_tests_with_goodput_and_per_request_records(slm_pytester: SlmPytester) -> None:
    slm_pytester.pytester.makepyfile(test_serving=bench("test_serving.py"))
    result = slm_pytester.run(
        "--slm-concurrency", "1", "2", "--slm-serving-requests", "10", "--slm-slo", "mlperf-interactive", "ttft=0.01"
    )
    outcome = result.parseoutcomes()
    assert outcome.get("passed") == 4 and outcome.get("skipped") == 2, result.stdout.str()  # rate sweep: none
    data = slm_pytester.results()
    c2 = metrics_of(data, "test_serving[tiny-model-bf16-c2]")
    per_request = c2["requests_per_s"]["info"]["per_request"]
    assert len(per_request["ttft_s"]) == 10 and set(per_request["output_tokens"]) == {8}
    assert per_request["ttft_s"][0] == pytest.approx(0.05, abs=1e-3)  # the fake engine's TTFT
    workload = c2["ttft_p50_s"]["info"]["workload"]
    assert workload["prompt_source"] == "shipped" and workload["prompt_distinct"] == 10
    assert workload["load"] == "concurrency" and workload["load_value"] == 2
    assert all(isinstance(v, str | int | float | bool) or v is None for v in workload.values())
    assert len(c2["ttft_p50_s"]["samples"]) == 5  # block statistics: the gate's unit of evidence
    # the fake: TTFT 50 ms, TPOT 20 ms: within MLPerf-interactive's 0.5 s / 30 ms, never within 10 ms TTFT
    assert c2["goodput_mlperf_interactive_rps"]["info"]["slo_met"] is True
    assert c2["goodput_ttft0.01_rps"]["value"] == 0.0
    sat = metrics_of(data, "test_saturation_point[tiny-model-bf16-mlperf-interactive-concurrency]")
    assert sat["saturation_concurrency"]["value"] == 2 and sat["saturation_concurrency"]["info"]["saturated"] is False
    none = metrics_of(data, "test_saturation_point[tiny-model-bf16-ttft=0.01-concurrency]")
    assert none["saturation_concurrency"]["value"] == 0.0


def test_rate_levels_need_an_engine_that_can_take_arrivals(slm_pytester: SlmPytester) -> None:
    slm_pytester.pytester.makepyfile(test_serving=bench("test_serving.py"))
    result = slm_pytester.run("--slm-concurrency", "1", "--slm-request-rate", "4", "-k", "not saturation")
    result.assert_outcomes(passed=1, failed=1)
    assert lines_with(result, "cannot take requests at a rate")


def test_serving_through_a_server_measures_the_client_and_the_server(slm_pytester: SlmPytester) -> None:
    slm_pytester.pytester.makepyfile(test_serving=bench("test_serving.py"))
    with FakeOpenAIServer(token_delay_s=0.002) as srv:
        result = slm_pytester.run(
            "--slm-engine", "openai", "--slm-endpoint", srv.url,
            "--slm-concurrency", "4", "--slm-request-rate", "40", "inf", "--slm-serving-requests", "12",
            "--slm-slo", "mlperf-server", "--slm-client-margin", "0.05",
        )  # fmt: skip
    outcome = result.parseoutcomes()
    assert outcome.get("passed") == 5, result.stdout.str()
    data = slm_pytester.results()
    r40 = metrics_of(data, "test_serving[tiny-model-bf16-r40]")
    assert r40["client_loop_lag_p99_s"]["value"] < 0.05 and r40["client_loop_lag_p99_s"]["n"] > 10
    assert r40["send_skew_p99_s"]["value"] < 0.05
    assert r40["server_generation_tokens_over_client"]["value"] == 1.0
    assert r40["ttft_p50_s"]["info"]["token_count_source"] == "usage"
    assert r40["requests_per_s"]["value"] < 40  # Poisson arrivals at 40/s cannot finish faster than sent
    # the warm-up requests (--slm-num-warmup 1) plus 12 per level
    assert len(srv.requests) == 1 + 3 * 12
    sat = metrics_of(data, "test_saturation_point[tiny-model-bf16-mlperf-server-rate]")
    assert sat["saturation_rate"]["info"]["levels"]["rinf"]["met"] is True


def test_a_saturated_client_makes_the_run_invalid_not_slow(slm_pytester: SlmPytester) -> None:
    slm_pytester.pytester.makepyfile(test_serving=bench("test_serving.py"))
    with FakeOpenAIServer() as srv:
        result = slm_pytester.run(
            "--slm-engine", "openai", "--slm-endpoint", srv.url, "--slm-concurrency", "4",
            "--slm-serving-requests", "8", "--slm-client-margin", "0.000001", "-k", "not saturation",
        )  # fmt: skip
    assert lines_with(result, "client event loop saturated: p99 lag"), result.stdout.str()
    assert result.parseoutcomes().get("passed") is None
    assert "requests_per_s" in metrics_of(slm_pytester.results(), "test_serving[tiny-model-bf16-c4]")


def test_levels_are_collected_one_test_each(slm_pytester: SlmPytester) -> None:
    slm_pytester.pytester.makepyfile(test_serving=bench("test_serving.py"))
    result = slm_pytester.run("--collect-only", "-q", "--slm-concurrency", "1", "8", "--slm-request-rate", "2", "inf")
    ids = [line for line in result.outlines if "::" in line]
    assert [i.split("::")[1] for i in ids[:4]] == [
        "test_serving[tiny-model-bf16-c1]",
        "test_serving[tiny-model-bf16-c8]",
        "test_serving[tiny-model-bf16-r2]",
        "test_serving[tiny-model-bf16-rinf]",
    ]
    assert len(ids) == 4 + 2 * 2  # two SLO presets × two sweep kinds
