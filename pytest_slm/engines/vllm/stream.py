"""Streaming on an in-process vLLM engine: the client loop that produces TTFT, TPOT and ITL.

Every prompt is submitted with ``add_request``, then the engine is stepped (the loop
``LLM.generate`` runs internally) and each DELTA output is stamped on the client clock as it
arrives. The engine's own timestamps for the same requests come back in
``RequestOutput.metrics`` (vLLM ``RequestStateStats``): the engine core stamps QUEUED,
SCHEDULED and every new token with ``time.monotonic()`` in its own process. On Linux that is
the same ``CLOCK_MONOTONIC`` the client's ``time.perf_counter`` reads, so the engine's view is
an independent measurement of the same events, on the same time axis.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import Any

from pytest_slm.engine_api import StreamTrace, tpot_s


def stream_requests(engine: Any, prompts: Sequence[Any], params: Sequence[Any]) -> list[StreamTrace]:
    """Submit every prompt to ``engine`` (a vLLM ``LLMEngine``), step it until all finish, and
    return one trace per prompt in submission order."""
    if engine.has_unfinished_requests():
        raise RuntimeError("engine has unfinished requests from an earlier call; refusing to mix them")
    order: list[str] = []
    submit: dict[str, float] = {}
    times: dict[str, list[float]] = {}
    texts: dict[str, list[str]] = {}
    token_ids: dict[str, list[int]] = {}
    prompt_tokens: dict[str, int] = {}
    engine_view: dict[str, dict[str, float]] = {}
    for prompt, p in zip(prompts, params, strict=True):
        rid = f"slm-{uuid.uuid4().hex[:12]}"
        submit[rid] = time.perf_counter()
        engine.add_request(rid, prompt, p)
        order.append(rid)
        times[rid], texts[rid], token_ids[rid] = [], [], []
    while engine.has_unfinished_requests():
        outputs: list[Any] = engine.step()
        now = time.perf_counter()
        for out in outputs:
            rid = out.request_id
            if rid not in times:
                continue
            for c in out.outputs:
                times[rid].extend([now] * len(c.token_ids))
                token_ids[rid].extend(c.token_ids)
                texts[rid].append(c.text)
            if out.prompt_token_ids is not None:
                prompt_tokens[rid] = len(out.prompt_token_ids)
            if out.finished and out.metrics is not None:
                engine_view[rid] = engine_timings(out.metrics)
    return [
        StreamTrace(
            submit[r],
            tuple(times[r]),
            prompt_tokens.get(r, 0),
            engine_view.get(r, {}),
            text="".join(texts[r]),
            token_ids=tuple(token_ids[r]),
        )
        for r in order
    ]


def engine_timings(stats: Any) -> dict[str, float]:
    """The engine's own view of a finished request (vLLM ``RequestStateStats``).

    ``ttft_s`` is first token − QUEUED, both stamped by the engine core: it leaves out what
    happens in the client process (tokenization, the hop to the engine core and back), which is
    exactly what the client-side figure adds. ``frontend_ttft_s`` is vLLM's own front-end figure
    (its output processor's clock, wall time since arrival), kept for reference.
    """
    out: dict[str, float] = {}
    queued = float(getattr(stats, "queued_ts", 0.0) or 0.0)
    scheduled = float(getattr(stats, "scheduled_ts", 0.0) or 0.0)
    first = float(getattr(stats, "first_token_ts", 0.0) or 0.0)
    last = float(getattr(stats, "last_token_ts", 0.0) or 0.0)
    n = int(getattr(stats, "num_generation_tokens", 0) or 0)
    for key, value in (("queued_ts", queued), ("scheduled_ts", scheduled), ("first_token_ts", first)):
        if value > 0:
            out[key] = value
    if last > 0:
        out["last_token_ts"] = last
    if first > queued > 0:
        out["ttft_s"] = first - queued
    if scheduled > queued > 0:
        out["queue_s"] = scheduled - queued
    tpot = tpot_s(first, last, n) if last > first > 0 else None
    if tpot is not None:
        out["tpot_s"] = tpot
    frontend = float(getattr(stats, "first_token_latency", 0.0) or 0.0)
    if frontend > 0:
        out["frontend_ttft_s"] = frontend
    out["num_preemptions"] = float(getattr(stats, "num_preemptions", 0) or 0)
    out["num_generation_tokens"] = float(n)
    return out
