"""Where an engine's load went: the worker's start-up facts from vLLM's own log lines, and the split of the
load time into the processes' start, the weights and what follows them."""

from __future__ import annotations

import logging

from pytest_slm.engines.vllm.facts import load_breakdown
from pytest_slm.engines.vllm.worker import StartupLog, startup_facts


def _log(handler: StartupLog, message: str, *args: object, created: float) -> None:
    record = logging.LogRecord("vllm.model_executor", logging.INFO, __file__, 1, message, args, None)
    record.created = created
    handler.emit(record)


def test_the_worker_reads_vllms_own_lines() -> None:
    handler = StartupLog()
    _log(handler, "Loading weights took %.2f seconds", 0.68, created=105.0)  # vLLM's CPU loader, as it formats it
    _log(handler, "Compiling a graph for compile range %s takes %.2f s", "(1, 8192)", 12.5, created=120.0)
    _log(handler, "Compiling a graph for compile range %s takes %.2f s", "(8193, 16384)", 2.5, created=123.0)
    _log(handler, "init engine took %d s", 3, created=124.0)  # not a start-up figure the worker keeps
    assert handler.seen == {"weights_s": (0.68, 105.0), "compile_cold_s": (15.0, 123.0)}
    facts = startup_facts(handler.seen, 100.0, eager=False)
    assert facts == {
        "worker_started_at": 100.0,
        "weights_s": 0.68,
        "weights_done_at": 105.0,
        "compile_cache": "cold",
        "compile_s": 15.0,
    }


def test_the_compile_cache_state() -> None:
    warm = {"compile_warm_s": (1.5, 10.0)}
    assert startup_facts(warm, 0.0, eager=False)["compile_cache"] == "warm"
    assert startup_facts(warm, 0.0, eager=True)["compile_cache"] == "off"  # eager: nothing compiled or loaded
    assert startup_facts({}, 0.0, eager=False)["compile_cache"] == "unknown"


def test_the_load_splits_into_start_weights_and_after() -> None:
    worker = {"worker_started_at": 119.0, "weights_s": 0.7, "weights_done_at": 120.0, "compile_cache": "off"}
    parts = load_breakdown(100.0, 126.0, worker)
    assert parts == {"total_s": 26.0, "compile_cache": "off", "start_s": 19.0, "weights_s": 0.7, "after_weights_s": 6.0}
    # stamps outside the load (another clock, a worker that was up before) are left out, never misread
    assert load_breakdown(100.0, 126.0, {**worker, "worker_started_at": 90.0}).get("start_s") is None
    assert load_breakdown(100.0, 126.0, {"error": "rpc failed"}) == {"total_s": 26.0, "compile_cache": "unknown"}
