"""The load generator: fixed concurrency or a Poisson request rate, bounded in requests and time.

Pytest-free. A *level* (:class:`LoadSpec`) is one point of a sweep: ``c8`` keeps 8 requests in
flight (a closed loop: a new request starts when one finishes), ``r4`` sends requests at the
times of a Poisson process of 4 requests/s (an open loop: arrivals do not wait for the server;
``rinf`` sends every request at once). A level stops *starting* requests after ``requests``
requests or ``max_s`` seconds, whichever comes first, and lets the ones in flight finish.

Engines serve a level in the way that fits them (:func:`run_load`): a :class:`Servable` engine
serves it itself (the OpenAI client's asyncio loop; the in-process vLLM engine, stepping its
``LLMEngine`` and adding requests between steps), any other engine by waves of ``concurrency``
requests through ``Engine.stream`` (concurrency levels only).
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, runtime_checkable

from pytest_slm.engine_api import Engine, SamplingSpec, StreamTrace
from pytest_slm.measure.machine import Probe
from pytest_slm.measure.validity import CpuUsage

KINDS = ("concurrency", "rate")
R = TypeVar("R")


class LoadUnsupported(RuntimeError):
    """The engine cannot serve this kind of load; the message says why."""


@dataclass(frozen=True)
class LoadSpec:
    """One load level: ``kind`` ``concurrency`` (requests in flight) or ``rate`` (requests/s, may be inf)."""

    kind: str
    value: float
    requests: int
    max_s: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"load kind must be one of {KINDS}, got {self.kind!r}")
        if self.kind == "concurrency" and (self.value < 1 or self.value != int(self.value)):
            raise ValueError(f"concurrency must be a positive integer, got {self.value}")
        if self.kind == "rate" and not self.value > 0:
            raise ValueError(f"request rate must be > 0 (or inf), got {self.value}")
        if self.requests < 1:
            raise ValueError(f"a level needs at least one request, got {self.requests}")

    @property
    def id(self) -> str:
        """Test-id part: ``c8``, ``r4``, ``r0.5``, ``rinf``."""
        if self.kind == "concurrency":
            return f"c{int(self.value)}"
        return "rinf" if math.isinf(self.value) else f"r{self.value:g}"

    @property
    def concurrency(self) -> int | None:
        return int(self.value) if self.kind == "concurrency" else None

    def describe(self) -> dict[str, Any]:
        """The level as flat JSON scalars for ``info["workload"]`` (inf as the string "inf")."""
        value: Any = "inf" if math.isinf(self.value) else self.value
        return {
            "load": self.kind,
            "load_value": value,
            "load_requests": self.requests,
            "load_max_s": self.max_s,
            "load_seed": self.seed,
        }


def levels(
    concurrency: Sequence[int], rates: Sequence[float], *, requests: int, max_s: float | None, seed: int = 0
) -> list[LoadSpec]:
    """Every level of a sweep: the concurrency levels, then the rates (each in the given order)."""
    out = [LoadSpec("concurrency", c, requests, max_s, seed) for c in concurrency]
    out += [LoadSpec("rate", r, requests, max_s, seed) for r in rates]
    return out


def arrival_offsets(rate: float, n: int, seed: int = 0) -> list[float]:
    """Send times (s from the start) of ``n`` requests of a Poisson process of ``rate`` requests/s:
    exponential gaps, the first request at 0; all at 0 for an infinite rate."""
    if math.isinf(rate):
        return [0.0] * n
    rng = random.Random(f"slm-arrivals:{seed}")
    out, t = [], 0.0
    for _ in range(n):
        out.append(t)
        t += rng.expovariate(rate)
    return out


@dataclass(frozen=True)
class PlannedRequest:
    """One request of a level: its prompt and sampling."""

    index: int
    prompt: str
    sampling: SamplingSpec


@dataclass(frozen=True)
class ServedRequest:
    """One request as served: when it was meant to be sent, and what came back (``trace.submit_s`` is
    when it was actually sent, on the same clock) or the error that ended it."""

    index: int
    intended_s: float
    trace: StreamTrace | None
    error: str = ""
    #: token count source: "usage" (the server said), "token_ids", "chunks", "engine" (in-process)
    token_count_source: str = "engine"
    #: when the request was actually handed over, where timing starts elsewhere (in-process at a rate)
    sent_s: float | None = None

    @property
    def ok(self) -> bool:
        return self.trace is not None and not self.error

    @property
    def send_skew_s(self) -> float | None:
        """Actual − intended send time (s)."""
        if self.sent_s is not None:
            return self.sent_s - self.intended_s
        return self.trace.submit_s - self.intended_s if self.trace is not None else None


@dataclass(frozen=True)
class ServingRun:
    """Every request of one level, and how trustworthy the client was while serving them."""

    load: LoadSpec
    requests: tuple[ServedRequest, ...]
    wall_s: float  # first send to last completion
    client: str  # how requests were sent, for the report
    planned: int  # requests planned; fewer were sent when the time budget ran out
    #: event-loop lag summary (p50_s, p99_s, max_s, ticks); empty where no event loop sends requests
    loop_lag: dict[str, Any] = field(default_factory=dict)
    #: whether actual-vs-intended send times measure the client (False for an in-process step loop,
    #: where requests can only join between engine steps and timing starts at the intended time)
    skew_is_client: bool = True
    #: engine-side figures from the server's own counters over the run (Prometheus deltas)
    server_metrics: dict[str, Any] = field(default_factory=dict)
    #: what the machine's CPUs did meanwhile (foreign load makes the run invalid)
    cpu: CpuUsage | None = None
    #: the reference kernel timed right before and right after the run (:mod:`pytest_slm.measure.machine`)
    machine: tuple[Probe | None, Probe | None] = (None, None)

    @property
    def completed(self) -> list[ServedRequest]:
        return [r for r in self.requests if r.ok]

    @property
    def failed(self) -> list[ServedRequest]:
        return [r for r in self.requests if not r.ok]


async def drive(
    load: LoadSpec,
    n: int,
    send: Callable[[int, float], Awaitable[R]],
    deadline_clock: Callable[[], float] = time.perf_counter,
) -> list[tuple[int, float, R]]:
    """Issue requests ``0..n-1`` as ``load`` says; ``send(i, intended_s)`` sends request ``i``.

    Returns (index, intended send time, result) for every request started; requests not started
    because the time budget ran out are absent."""
    t0 = deadline_clock()
    deadline = t0 + load.max_s if load.max_s is not None else math.inf
    results: list[tuple[int, float, R]] = []
    if load.kind == "concurrency":
        next_index = 0

        async def worker() -> None:
            nonlocal next_index
            while next_index < n and deadline_clock() < deadline:
                i = next_index
                next_index += 1
                intended = deadline_clock()
                results.append((i, intended, await send(i, intended)))

        await asyncio.gather(*(worker() for _ in range(min(int(load.value), n))))
    else:
        offsets = arrival_offsets(load.value, n, load.seed)

        async def one(i: int, intended: float) -> None:
            results.append((i, intended, await send(i, intended)))

        tasks = []
        for i, offset in enumerate(offsets):
            intended = t0 + offset
            if intended > deadline:
                break
            delay = intended - deadline_clock()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(one(i, intended)))
        await asyncio.gather(*tasks)
    results.sort(key=lambda r: r[0])
    return results


@runtime_checkable
class Servable(Protocol):
    """An engine capability (:mod:`pytest_slm.engine_api`): it serves a load level itself, sending
    requests as ``load`` says and timing each on the client clock."""

    def serve(self, plans: Sequence[PlannedRequest], load: LoadSpec) -> ServingRun: ...


def run_load(engine: Engine, plans: Sequence[PlannedRequest], load: LoadSpec) -> ServingRun:
    """Serve ``plans`` on ``engine`` at ``load`` (see the module docstring for how each engine does it)."""
    if isinstance(engine, Servable):
        return engine.serve(plans, load)
    if load.kind != "concurrency":
        raise LoadUnsupported(
            f"the {engine.kind!r} engine cannot take requests at a rate (it has no serve()); use concurrency levels"
        )
    return serve_in_waves(engine, plans, load)


def serve_in_waves(engine: Engine, plans: Sequence[PlannedRequest], load: LoadSpec) -> ServingRun:
    """Concurrency by waves: ``concurrency`` requests at once through ``Engine.stream``, the next wave
    when the whole wave is done (a batch-synchronous approximation, said so in ``client``)."""
    c = int(load.value)
    deadline = time.perf_counter() + load.max_s if load.max_s is not None else math.inf
    served: list[ServedRequest] = []
    t0 = time.perf_counter()
    for start in range(0, len(plans), c):
        if time.perf_counter() >= deadline:
            break
        wave = plans[start : start + c]
        intended = time.perf_counter()
        traces = engine.stream([p.prompt for p in wave], [p.sampling for p in wave])
        served += [ServedRequest(p.index, intended, t) for p, t in zip(wave, traces, strict=True)]
    ends = [t.trace.token_times_s[-1] for t in served if t.trace and t.trace.token_times_s]
    return ServingRun(
        load,
        tuple(served),
        (max(ends) if ends else time.perf_counter()) - t0,
        client=f"waves of {c} through Engine.stream (the engine has no serve())",
        planned=len(plans),
        skew_is_client=False,
    )
