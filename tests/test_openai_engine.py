"""The openai engine against a fake OpenAI-compatible server on loopback: wire format, timing, and
every error path (status and body excerpt in the failure, bounded retries, no leaked API key)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

pytest.importorskip("aiohttp")

from pytest_slm.checkpoints.resolve import Checkpoint
from pytest_slm.devices import DeviceChoice
from pytest_slm.engine_api import EngineSpec, SamplingSpec
from pytest_slm.engines.openai import client as oc
from pytest_slm.engines.openai.engine import (
    EngineSetupError,
    ExternalOpenAIEngine,
    OpenAIEngine,
    normalize_endpoint,
)
from pytest_slm.engines.openai.server import free_port
from pytest_slm.engines.registry import load_engine_class
from pytest_slm.precisions import resolve_precisions
from pytest_slm.settings import Settings
from tests.fake_openai_server import FakeOpenAIServer

SECRET = "sk-test-0123456789abcdef"
CPU = DeviceChoice("cpu", "test")


def make_engine(fake_checkpoint: Path, url: str, **settings: object) -> OpenAIEngine:
    spec = EngineSpec(str(fake_checkpoint), resolve_precisions(["bf16"])[0])
    s = Settings(endpoint=url, **settings)  # type: ignore[arg-type]
    return ExternalOpenAIEngine(spec, Checkpoint("tiny-model", fake_checkpoint, str(fake_checkpoint), "0"), s, CPU)


# -- wire format ---------------------------------------------------------------------------------
def test_sse_parser_handles_split_events_crlf_comments_and_multiline_data() -> None:
    p = oc.SSEParser()
    assert list(p.feed(b'data: {"a"')) == []
    assert list(p.feed(b": 1}\n\n: ping\n\ndata: x\r\n")) == ['{"a": 1}']
    assert list(p.feed(b"data: y\r\n\r\ndata: [DONE]\n\n")) == ["x\ny", "[DONE]"]
    assert p.pending == ""
    q = oc.SSEParser()
    snowman = "data: \u2603\n\n".encode()
    assert list(q.feed(snowman[:7])) == [] and list(q.feed(snowman[7:])) == ["\u2603"]


def test_payloads() -> None:
    req = oc.Request(prompt="hi", max_tokens=8, model="m")
    p = oc.completion_payload(req, stream=True)
    assert p["stream_options"] == {"include_usage": True}
    assert p["ignore_eos"] is True and p["min_tokens"] == 8 and p["return_token_ids"] is True
    plain = oc.completion_payload(
        oc.Request(prompt=[1, 2], max_tokens=4, model="m", vllm_extensions=False), stream=False
    )
    assert plain["prompt"] == [1, 2] and not {"ignore_eos", "min_tokens", "return_token_ids"} & set(plain)
    chat = oc.chat_payload(req, stream=True)
    assert chat["messages"] == [{"role": "user", "content": "hi"}] and "prompt" not in chat


def test_engine_view_adds_queue_time_back() -> None:
    view = oc.engine_view({"time_to_first_token_ms": 30.0, "queue_time_ms": 10.0, "mean_itl_ms": 5.0})
    assert view == pytest.approx({"ttft_s": 0.04, "prefill_s": 0.03, "queue_s": 0.01, "tpot_s": 0.005})


def test_registry_and_endpoint_normalization() -> None:
    cls = load_engine_class("openai")
    assert cls is OpenAIEngine
    assert cls.for_settings(Settings(endpoint="http://x")) is ExternalOpenAIEngine
    assert cls.for_settings(Settings()) is OpenAIEngine
    assert normalize_endpoint("http://h:1/v1/") == "http://h:1"


# -- the engine on a healthy fake ----------------------------------------------------------------
def test_stream_times_every_token_and_takes_counts_from_usage(fake_checkpoint: Path) -> None:
    with FakeOpenAIServer(token_delay_s=0.004) as srv:
        engine = make_engine(fake_checkpoint, srv.url + "/v1")
        try:
            traces = engine.stream(["one two three", "four five"], [SamplingSpec(6), SamplingSpec(3)])
            desc = engine.describe()
        finally:
            engine.close()
    assert [t.output_tokens for t in traces] == [6, 3]
    assert [t.prompt_tokens for t in traces] == [3, 2]
    for t in traces:
        gaps = [b - a for a, b in zip(t.token_times_s, t.token_times_s[1:], strict=False)]
        # each chunk stamped when it arrived, not all at the end
        assert min(gaps) > 0 and sum(gaps) >= 0.8 * 0.004 * len(gaps)
        assert t.token_times_s[0] > t.submit_s
        assert 0 < t.engine["ttft_s"] <= t.token_times_s[0] - t.submit_s + 0.005
        assert t.token_ids[0] == 100
    assert srv.requests[0]["ignore_eos"] is True and srv.requests[0]["stream_options"]["include_usage"]
    assert desc["token_count_source"] == {"usage": 2}
    assert desc["served_model"] == "fake-model" and desc["api_key"] == "none"
    assert desc["memory"].startswith("not measurable through HTTP")


def test_without_usage_prompt_tokens_come_from_the_tokenizer(fake_checkpoint: Path) -> None:
    class Words:
        def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
            return list(range(len(text.split())))

    with FakeOpenAIServer(mode="no_usage") as srv:
        engine = make_engine(fake_checkpoint, srv.url)
        engine._tokenizer = Words()
        try:
            (trace,) = engine.stream(["a b c d"], SamplingSpec(4))
            assert trace.prompt_tokens == 4 and trace.output_tokens == 4  # one timed chunk per token here
            assert engine.describe()["token_count_source"] == {"tokenizer": 1}
        finally:
            engine.close()


def test_generate_score_complete_and_max_len(fake_checkpoint: Path) -> None:
    with FakeOpenAIServer() as srv:
        engine = make_engine(fake_checkpoint, srv.url)
        try:
            out = engine.generate(["a b", "c d e"], SamplingSpec(5))
            assert (out.requests, out.prompt_tokens, out.output_tokens) == (2, 5, 10)
            assert engine.score([[5, 6, 7]]) == [[(-1.0, 6), (-1.0, 7)]]
            assert srv.requests[-1]["prompt"] == [5, 6, 7] and srv.requests[-1]["prompt_logprobs"] == 1
            assert engine.complete([[1, 2]], max_tokens=3, stop=["\n"]) == [" tok tok tok"]
            assert srv.requests[-1]["stop"] == ["\n"] and "min_tokens" not in srv.requests[-1]
            assert engine.max_model_len == 512
        finally:
            engine.close()


def test_score_on_a_server_without_vllm_extensions_skips_the_task(fake_checkpoint: Path) -> None:
    pytest.importorskip("lm_eval")
    from pytest_slm.accuracy.evaluate import TaskUnavailable

    with FakeOpenAIServer(with_version=False) as srv:
        engine = make_engine(fake_checkpoint, srv.url)
        try:
            with pytest.raises(TaskUnavailable, match="no prompt logprobs"):
                engine.score([[1, 2]])
            assert "ignore_eos is not sent" in engine.describe()["note"]
        finally:
            engine.close()


# -- error paths ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("mode", "settings", "message"),
    [
        ("error500", {}, r"HTTP 500 .*internal kaboom: the fake engine fell over"),
        ("malformed", {}, r"malformed SSE event after 1 chunks: '\{this is not json'"),
        ("broken", {}, r"(ended before \[DONE\]|connection broke) after 2 chunks"),
        ("stall", {"stall_timeout_s": 0.5}, r"stream stalled .* after 1 chunks"),
        ("hang", {"request_timeout_s": 1.0}, r"timed out after 1\.\d s"),
    ],
)
def test_bad_streams_fail_with_status_and_excerpt(
    fake_checkpoint: Path, mode: str, settings: dict[str, float], message: str
) -> None:
    with FakeOpenAIServer(mode=mode) as srv:
        engine = make_engine(fake_checkpoint, srv.url, **settings)
        try:
            t0 = time.perf_counter()
            with pytest.raises(oc.EndpointError, match=message):
                engine.stream(["hello"], SamplingSpec(4))
            assert time.perf_counter() - t0 < 10
            assert len(srv.requests) == 1  # a request that may have been partly served is never retried
        finally:
            engine.close()


def test_connection_refused_is_retried_a_bounded_number_of_times(fake_checkpoint: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    t0 = time.perf_counter()
    with pytest.raises(oc.EndpointError, match=f"GET {url}/v1/models: cannot connect"):
        make_engine(fake_checkpoint, url)
    assert time.perf_counter() - t0 < 5


def test_unreachable_mid_run_names_the_attempts(fake_checkpoint: Path) -> None:
    with FakeOpenAIServer() as srv:
        engine = make_engine(fake_checkpoint, srv.url)
    try:  # the server is gone now
        with pytest.raises(oc.EndpointError, match=r"cannot connect after 3 attempts"):
            engine.stream(["x"], SamplingSpec(2))
    finally:
        engine.close()


def test_api_key_is_sent_but_never_written(fake_checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLM_TEST_KEY", SECRET)
    with FakeOpenAIServer(api_key=SECRET) as srv:
        engine = make_engine(fake_checkpoint, srv.url, api_key_env="SLM_TEST_KEY")
        try:
            engine.stream(["x"], SamplingSpec(2))
            assert srv.auth_headers[-1] == f"Bearer {SECRET}"
            assert SECRET not in json.dumps(engine.describe())
            # the server echoes the header it got: the error must not carry it
            srv.api_key = "another-key"
            with pytest.raises(oc.EndpointError) as info:
                engine.stream(["x"], SamplingSpec(2))
            assert "HTTP 401" in str(info.value) and "<redacted>" in str(info.value)
            assert SECRET not in str(info.value)
        finally:
            engine.close()


def test_wrong_key_fails_at_setup_with_401(fake_checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLM_TEST_KEY", SECRET)
    with FakeOpenAIServer(api_key="the-right-one") as srv, pytest.raises(oc.EndpointError, match="HTTP 401") as info:
        make_engine(fake_checkpoint, srv.url, api_key_env="SLM_TEST_KEY")
    assert SECRET not in str(info.value)


def test_missing_key_variable_is_named_not_guessed(fake_checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SLM_NO_SUCH_KEY", raising=False)
    with pytest.raises(EngineSetupError, match="SLM_NO_SUCH_KEY, which is not set"):
        make_engine(fake_checkpoint, "http://127.0.0.1:1", api_key_env="SLM_NO_SUCH_KEY")


def test_a_managed_server_that_died_fails_the_next_request_with_its_log(fake_checkpoint: Path, tmp_path: Path) -> None:
    import sys

    from pytest_slm.engines.openai.server import ServerError, ServerProcess

    with FakeOpenAIServer() as srv:
        engine = make_engine(fake_checkpoint, srv.url)
        log = tmp_path / "server.log"
        dead = ServerProcess(
            [sys.executable, "-c", "print('EngineCore died: illegal instruction'); raise SystemExit(1)"],
            log_path=log,
            host="127.0.0.1",
            port=1,
        )
        dead.start()
        assert dead.proc is not None
        dead.proc.wait(10)
        engine.server = dead  # as if pytest-slm had started it and it died mid-run
        try:
            with pytest.raises(ServerError, match=r"(?s)exited with status 1; last lines of .*illegal instruction"):
                engine.stream(["x"], SamplingSpec(2))
            assert engine.memory_metrics() == []
        finally:
            engine.close()


def test_chat_api_streams_message_deltas(fake_checkpoint: Path) -> None:
    with FakeOpenAIServer() as srv:
        engine = make_engine(fake_checkpoint, srv.url, openai_api="chat")
        try:
            (trace,) = engine.stream(["hello there"], SamplingSpec(5))
        finally:
            engine.close()
    assert trace.output_tokens == 5 and trace.text == " t0 t1 t2 t3 t4"
    assert srv.requests[0]["messages"] == [{"role": "user", "content": "hello there"}]


def test_a_checkpoint_without_tokenizer_files_has_no_tokenizer(fake_checkpoint: Path) -> None:
    with FakeOpenAIServer() as srv:
        engine = make_engine(fake_checkpoint, srv.url)
        try:
            assert getattr(engine, "tokenizer", None) is None
            with pytest.raises(AttributeError, match="no tokenizer in"):
                _ = engine.tokenizer
        finally:
            engine.close()
