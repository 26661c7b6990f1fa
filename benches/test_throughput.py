"""Offline batch throughput: ``--slm-batch-size`` prompts generated together, ``--slm-num-runs`` times."""

from __future__ import annotations

import time

import pytest

from pytest_slm.measure.throughput import throughput_metrics
from pytest_slm.measure.workloads import Workload, run_offline


def test_offline_throughput(slm_runs, slm):
    """Output tokens/s, total tokens/s, requests/s and batch latency over the measured batches."""
    slm.extend(throughput_metrics(slm_runs.offline(slm.workload("batch"))))


def test_harness_overhead(slm_engine, slm):
    """Plugin throughput ÷ a raw ``vllm.LLM.generate`` loop on the same prompts, same process.

    The two are interleaved (ABBA) for ``--slm-num-runs`` pairs so machine drift cancels; a ratio
    near 1 means the figures above measure vLLM, not pytest-slm.
    """
    llm = getattr(slm_engine, "llm", None)
    if llm is None:
        pytest.skip(f"the {slm_engine.kind!r} engine has no vllm.LLM to compare against")
    w = slm.workload("batch")
    one = Workload(w.concurrency, w.prompt, w.max_new_tokens, num_warmup=0, num_runs=1)
    from pytest_slm.engines.vllm_args import sampling_params

    params = sampling_params(w.sampling, streaming=False)
    prompts = w.prompts()
    llm.generate(prompts, params, use_tqdm=False)  # warm

    def plugin_s() -> float:
        return run_offline(slm_engine, one).batches[0].wall_s

    def raw_s() -> float:
        t0 = time.perf_counter()
        llm.generate(prompts, params, use_tqdm=False)
        return time.perf_counter() - t0

    plugin, raw = [], []
    for i in range(w.num_runs):
        first, second = (plugin_s, raw_s) if i % 2 == 0 else (raw_s, plugin_s)
        a, b = first(), second()
        plugin.append(a if first is plugin_s else b)
        raw.append(b if first is plugin_s else a)
    slm.record(
        "harness_throughput_ratio",
        sum(raw) / sum(plugin),
        unit="1",
        higher_is_better=True,
        n=len(raw),
        samples=[r / p for r, p in zip(raw, plugin, strict=True)],
        plugin_s=sum(plugin),
        raw_s=sum(raw),
    )
