"""The server's own counters: vLLM's Prometheus ``/metrics``, scraped before and after a run. Pytest-free.

The deltas are an engine-side cross-check of what the client measured on the same requests:
mean TTFT from the ``vllm:time_to_first_token_seconds`` histogram (sum ÷ count of the delta),
mean ITL and per-request TPOT likewise, and prompt and generated token totals from the
``vllm:prompt_tokens`` / ``vllm:generation_tokens`` counters (names as vLLM 0.32's
``v1/metrics/loggers.py`` registers them; counters are exported with a ``_total`` suffix).
Samples are summed over label sets (model name, engine index).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: exported sample name -> short key
SAMPLES = {
    "vllm:time_to_first_token_seconds_sum": "ttft_sum",
    "vllm:time_to_first_token_seconds_count": "ttft_count",
    "vllm:inter_token_latency_seconds_sum": "itl_sum",
    "vllm:inter_token_latency_seconds_count": "itl_count",
    "vllm:request_time_per_output_token_seconds_sum": "tpot_sum",
    "vllm:request_time_per_output_token_seconds_count": "tpot_count",
    "vllm:e2e_request_latency_seconds_sum": "e2e_sum",
    "vllm:e2e_request_latency_seconds_count": "e2e_count",
    "vllm:prompt_tokens_total": "prompt_tokens",
    "vllm:generation_tokens_total": "generation_tokens",
    "vllm:request_success_total": "requests",
    "vllm:num_preemptions_total": "preemptions",
}


def parse(text: str) -> dict[str, float]:
    """The :data:`SAMPLES` of a Prometheus text exposition, summed over labels (absent ones left out)."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = SAMPLES.get(sample.name)
            if key is not None:
                out[key] = out.get(key, 0.0) + float(sample.value)
    return out


def delta(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, Any]:
    """What the server counted between two scrapes, with the histogram means (s)."""
    d = {k: after[k] - before.get(k, 0.0) for k in after}
    out: dict[str, Any] = {k: d[k] for k in ("prompt_tokens", "generation_tokens", "requests", "preemptions") if k in d}
    for name in ("ttft", "itl", "tpot", "e2e"):
        count = d.get(f"{name}_count", 0.0)
        if count > 0:
            out[f"{name}_mean_s"] = d[f"{name}_sum"] / count
            out[f"{name}_count"] = count
    return out
