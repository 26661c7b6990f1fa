"""Load levels on the in-process vLLM engine: requests join a running ``LLMEngine`` between steps.

The loop is the one :mod:`pytest_slm.engines.vllm.stream` runs (``add_request``, ``step``, stamp
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
from dataclasses import dataclass, field
from typing import Any

from pytest_slm.engine_api import SamplingSpec, StreamTrace
from pytest_slm.engines.vllm.args import sampling_params
from pytest_slm.engines.vllm.stream import engine_timings
from pytest_slm.serving.load import LoadSpec, PlannedRequest, ServedRequest, ServingRun, arrival_offsets

#: turns a :class:`SamplingSpec` into the engine's sampling parameters
MakeParams = Callable[[SamplingSpec], Any]


@dataclass
class _Admitted:
    """One request in the engine: when it was meant to arrive and was added, and what came back."""

    index: int
    intended_s: float
    added_s: float
    times: list[float] = field(default_factory=list)
    ids: list[int] = field(default_factory=list)
    text: list[str] = field(default_factory=list)
    prompt_tokens: int = 0
    engine: dict[str, float] = field(default_factory=dict)


class _StepLoop:
    """One level on an ``LLMEngine``: admit what is due, step, stamp the outputs; until every planned
    request that may still start has finished."""

    def __init__(self, engine: Any, plans: Sequence[PlannedRequest], load: LoadSpec, make_params: MakeParams) -> None:
        self.engine, self.plans, self.make_params = engine, plans, make_params
        self.t0 = time.perf_counter()
        self.deadline = self.t0 + load.max_s if load.max_s is not None else math.inf
        #: arrival times at a rate (s after t0); None at a concurrency
        self.offsets = arrival_offsets(load.value, len(plans), load.seed) if load.kind == "rate" else None
        self.limit = load.concurrency or len(plans)
        self.next = 0
        self.inflight = 0
        self.admitted: dict[str, _Admitted] = {}  # in admission order

    def run(self) -> None:
        while True:
            now = time.perf_counter()
            self._admit_due(now)
            if not self.engine.has_unfinished_requests():
                if not self._more_to_come(now):
                    return
                if self.offsets is not None:
                    time.sleep(max(0.0, self.t0 + self.offsets[self.next] - time.perf_counter()))
                continue
            outputs: list[Any] = self.engine.step()
            self._stamp(outputs, time.perf_counter())

    def _admit(self, i: int, intended: float) -> None:
        rid = f"slm-{uuid.uuid4().hex[:12]}"
        added = time.perf_counter()
        self.engine.add_request(rid, self.plans[i].prompt, self.make_params(self.plans[i].sampling))
        self.admitted[rid] = _Admitted(i, intended, added)
        self.inflight += 1

    def _admit_due(self, now: float) -> None:
        """At a concurrency: fill the free slots now; at a rate: every request whose arrival has passed."""
        n = len(self.plans)
        if self.offsets is None:
            while self.next < n and self.inflight < self.limit and now < self.deadline:
                self._admit(self.next, now)
                self.next += 1
        else:
            while self.next < n and self.t0 + self.offsets[self.next] <= min(now, self.deadline):
                self._admit(self.next, self.t0 + self.offsets[self.next])
                self.next += 1

    def _more_to_come(self, now: float) -> bool:
        if self.next >= len(self.plans):
            return False
        if self.offsets is None:
            return now < self.deadline
        return self.t0 + self.offsets[self.next] <= self.deadline

    def _stamp(self, outputs: Sequence[Any], now: float) -> None:
        for out in outputs:
            req = self.admitted.get(out.request_id)
            if req is None:
                continue
            for c in out.outputs:
                req.times.extend([now] * len(c.token_ids))
                req.ids.extend(c.token_ids)
                req.text.append(c.text)
            if out.prompt_token_ids is not None:
                req.prompt_tokens = len(out.prompt_token_ids)
            if out.finished:
                self.inflight -= 1
                if out.metrics is not None:
                    req.engine = engine_timings(out.metrics)

    def served(self) -> list[ServedRequest]:
        out = []
        for req in self.admitted.values():
            # at a rate, timing starts at the arrival (see module docstring); at a concurrency, at admission
            submit = req.intended_s if self.offsets is not None else req.added_s
            trace = StreamTrace(
                submit,
                tuple(req.times),
                req.prompt_tokens,
                req.engine,
                text="".join(req.text),
                token_ids=tuple(req.ids),
            )
            out.append(ServedRequest(req.index, req.intended_s, trace, "", "engine", sent_s=req.added_s))
        return out


def serve_llm_engine(
    engine: Any,
    plans: Sequence[PlannedRequest],
    load: LoadSpec,
    make_params: MakeParams | None = None,
) -> ServingRun:
    """Serve ``plans`` at ``load`` on a vLLM ``LLMEngine`` (``LLM.llm_engine``); ``make_params`` turns a
    :class:`SamplingSpec` into the engine's sampling parameters (vLLM's, streaming DELTA, by default)."""
    if engine.has_unfinished_requests():
        raise RuntimeError("engine has unfinished requests from an earlier call; refusing to mix them")
    loop = _StepLoop(engine, plans, load, make_params or _streaming_params)
    loop.run()
    served = loop.served()
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


def _streaming_params(spec: SamplingSpec) -> Any:
    return sampling_params(spec, streaming=True)
