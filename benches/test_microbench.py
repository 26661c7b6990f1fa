"""Micro-benchmarks with pytest-benchmark's ``benchmark`` fixture on the loaded engine.

pytest-benchmark times the call (its rounds, calibration and ``--benchmark-*`` options apply); because
the test also takes ``slm``, its statistics become pytest-slm records (``benchmark_{min,max,mean,median,
stddev}_s``, per-round times as samples), gated and reported like the rest. With ``--benchmark-disable``
or under xdist pytest-benchmark runs the function once, untimed: no record, and the summary says so.
"""

from __future__ import annotations

import pytest

from pytest_slm.engine_api import SamplingSpec

pytest.importorskip("pytest_benchmark", reason="pytest-benchmark is optional (pip install pytest-benchmark)")


def test_tokenize_prompts(slm_engine, slm, benchmark):
    """Seconds to tokenize the batch workload's prompt set with the engine's own tokenizer."""
    tokenizer = getattr(slm_engine, "tokenizer", None)
    if tokenizer is None:
        pytest.skip(f"the {slm_engine.kind!r} engine exposes no tokenizer")
    prompts = slm.workload("batch").prompts()
    ids = benchmark(lambda: [tokenizer.encode(p) for p in prompts])
    assert all(ids), "a prompt tokenized to nothing"


def test_generate_one_token(slm_engine, slm, benchmark):
    """Seconds for one request that generates a single token (prefill plus one decode step), offline."""
    prompt = slm.workload("single").prompts()
    out = benchmark.pedantic(
        slm_engine.generate,
        args=(prompt, SamplingSpec(max_new_tokens=1)),
        rounds=slm.settings.num_runs,
        warmup_rounds=1,
    )
    assert out.output_tokens == 1
