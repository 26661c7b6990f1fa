"""Load levels on the in-process vLLM engine: requests join a running ``LLMEngine`` between steps.

The loop is the one :mod:`pytest_slm.engines.vllm_stream` runs (``add_request``, ``step``, stamp
each DELTA output on the client clock), with admission between steps: at a concurrency level a
new request joins as soon as one finishes; at a request rate a request joins at the first step
boundary after its Poisson arrival time. A request can only join between steps, so at a rate its
timing starts at its *arrival* time (``submit_s`` = intended time): the wait for the step boundary
is part of its TTFT, as it would be in a server's queue. The skew between arrival and admission is
recorded, but it measures the engine's step length, not a saturated client.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from pytest_slm.engines.base import StreamTrace
from pytest_slm.serving.load import LoadSpec, PlannedRequest, ServedRequest, ServingRun, arrival_offsets


def serve_llm_engine(
    engine: Any,
    plans: Sequence[PlannedRequest],
    load: LoadSpec,
    make_params: Callable[[Any], Any] | None = None,
) -> ServingRun:
    """Serve ``plans`` at ``load`` on a vLLM ``LLMEngine`` (``LLM.llm_engine``); ``make_params`` turns a
    :class:`SamplingSpec` into the engine's sampling parameters (vLLM's, streaming DELTA, by default)."""
    from pytest_slm.engines.vllm_stream import engine_timings

    if make_params is None:
        from pytest_slm.engines.vllm_args import sampling_params

        def make_params(spec: Any) -> Any:
            return sampling_params(spec, streaming=True)

    if engine.has_unfinished_requests():
        raise RuntimeError("engine has unfinished requests from an earlier call; refusing to mix them")
    t0 = time.perf_counter()
    deadline = t0 + load.max_s if load.max_s is not None else math.inf
    offsets = arrival_offsets(load.value, len(plans), load.seed) if load.kind == "rate" else None
    limit = load.concurrency or len(plans)
    nxt = 0
    inflight = 0
    state: dict[str, dict[str, Any]] = {}
    order: list[str] = []

    def admit(i: int, intended: float) -> None:
        nonlocal inflight
        rid = f"slm-{uuid.uuid4().hex[:12]}"
        added = time.perf_counter()
        engine.add_request(rid, plans[i].prompt, make_params(plans[i].sampling))
        state[rid] = {
            "index": i,
            "intended": intended,
            "added": added,
            "times": [],
            "ids": [],
            "text": [],
            "prompt_tokens": 0,
            "engine": {},
        }
        order.append(rid)
        inflight += 1

    while True:
        now = time.perf_counter()
        if offsets is None:
            while nxt < len(plans) and inflight < limit and now < deadline:
                admit(nxt, now)
                nxt += 1
        else:
            while nxt < len(plans) and t0 + offsets[nxt] <= min(now, deadline):
                admit(nxt, t0 + offsets[nxt])
                nxt += 1
        if not engine.has_unfinished_requests():
            more = nxt < len(plans) and (now < deadline if offsets is None else t0 + offsets[nxt] <= deadline)
            if not more:
                break
            if offsets is not None:
                time.sleep(max(0.0, t0 + offsets[nxt] - time.perf_counter()))
            continue
        outputs: list[Any] = engine.step()
        now = time.perf_counter()
        for out in outputs:
            st = state.get(out.request_id)
            if st is None:
                continue
            for c in out.outputs:
                st["times"].extend([now] * len(c.token_ids))
                st["ids"].extend(c.token_ids)
                st["text"].append(c.text)
            if out.prompt_token_ids is not None:
                st["prompt_tokens"] = len(out.prompt_token_ids)
            if out.finished:
                inflight -= 1
                if out.metrics is not None:
                    st["engine"] = engine_timings(out.metrics)
    served = []
    for rid in order:
        st = state[rid]
        # at a rate, timing starts at the arrival (see module docstring); at a concurrency, at admission
        submit = st["intended"] if offsets is not None else st["added"]
        trace = StreamTrace(
            submit,
            tuple(st["times"]),
            st["prompt_tokens"],
            st["engine"],
            text="".join(st["text"]),
            token_ids=tuple(st["ids"]),
        )
        served.append(ServedRequest(st["index"], st["intended"], trace, "", "engine", sent_s=st["added"]))
    ends = [s.trace.token_times_s[-1] for s in served if s.trace is not None and s.trace.token_times_s]
    starts = [s.trace.submit_s for s in served if s.trace is not None]
    wall = max(ends) - min(starts) if ends and starts else 0.0
    return ServingRun(
        load,
        tuple(served),
        wall,
        client="in-process vLLM LLMEngine step loop (requests join between steps)",
        planned=len(plans),
        skew_is_client=False,
    )
