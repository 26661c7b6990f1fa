"""Did the GPU slow itself down during a measured window? NVML's own account. Pytest-free.

A GPU that hits its thermal limit, its board limit or a reliability limit lowers its clocks
without being asked; latency and throughput measured meanwhile describe the cooling of that
machine, not the model. NVML keeps two records of it, and a window reads both:

- the *violation time* of each performance policy (``nvmlDeviceGetViolationStatus``), a counter
  of nanoseconds the policy held the clocks down since the driver loaded: its growth over the
  window says how long the window ran throttled, however briefly;
- the *current clock-event reasons* (``nvmlDeviceGetCurrentClocksEventReasons``) when the window
  ends: hardware slowdown, thermal slowdown, power brake.

A power cap is not among them: a loaded GPU at its power limit is the steady state every
measurement on it shares (the energy benches report power separately).

Where NVML, the GPU or a counter is missing, the window records nothing and says nothing: the
check is additional evidence, never a reason to fail.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

#: clock-event reason bits (NVML's ``nvmlClocksEventReason*``) that mean the GPU slowed itself down
THROTTLE_BITS: Mapping[int, str] = {
    0x08: "hardware slowdown",
    0x20: "software thermal slowdown",
    0x40: "hardware thermal slowdown",
    0x80: "hardware power brake",
}
#: NVML performance policies (``NVML_PERF_POLICY_*``) whose violation time during a window counts
VIOLATION_POLICIES: Mapping[int, str] = {1: "thermal", 3: "board limit", 5: "reliability"}
#: how the reason of a throttled window starts (latency, throughput, serving and energy windows alike)
THROTTLE_REASON_PREFIX = "the device slowed itself down during the window"


def current_reasons(nvml: Any, handle: Any) -> list[str]:
    """The clock-event reasons NVML reports now that distort a measurement ([] where it cannot say)."""
    getter = getattr(nvml, "nvmlDeviceGetCurrentClocksEventReasons", None) or getattr(
        nvml, "nvmlDeviceGetCurrentClocksThrottleReasons", None
    )
    if getter is None:
        return []
    try:
        mask = int(getter(handle))
    except Exception:
        return []
    return [name for bit, name in THROTTLE_BITS.items() if mask & bit]


def violation_ns(nvml: Any, handle: Any) -> dict[int, int]:
    """Each counted policy's violation time so far, in ns (policies the GPU does not report are left out)."""
    out: dict[int, int] = {}
    for policy in VIOLATION_POLICIES:
        with contextlib.suppress(Exception):
            out[policy] = int(nvml.nvmlDeviceGetViolationStatus(handle, policy).violationTime)
    return out


def describe(reasons: list[str], violated_ns: Mapping[int, int]) -> tuple[str, ...]:
    """What the window saw, one phrase each: the violated policies with their time, then the reasons."""
    out = [f"{VIOLATION_POLICIES[p]} limit for {ns / 1e6:.0f} ms" for p, ns in sorted(violated_ns.items()) if ns > 0]
    return (*out, *reasons)


def problem(throttled: tuple[str, ...]) -> str | None:
    """The reason a window is invalid, when the GPU slowed itself down during it."""
    return f"{THROTTLE_REASON_PREFIX}: {', '.join(throttled)}" if throttled else None


class GpuWindow:
    """``with GpuWindow(uuid) as w: <the measured window>``; then ``w.throttled`` names what slowed the
    GPU down during it (empty: nothing, or nothing NVML could say). ``nvml``: the ``pynvml`` module
    (imported when not given)."""

    def __init__(self, gpu_uuid: str | None, nvml: Any = None) -> None:
        self.gpu_uuid = gpu_uuid
        self.throttled: tuple[str, ...] = ()
        self._nvml = nvml
        self._handle: Any = None
        self._start: dict[int, int] = {}

    def __enter__(self) -> GpuWindow:
        if self.gpu_uuid is None:
            return self
        try:
            if self._nvml is None:
                import pynvml

                self._nvml = pynvml
            self._nvml.nvmlInit()
            self._handle = self._nvml.nvmlDeviceGetHandleByUUID(self.gpu_uuid)
        except Exception:  # no NVML, no such GPU: the window goes unchecked
            self._handle = None
            return self
        self._start = violation_ns(self._nvml, self._handle)
        current_reasons(self._nvml, self._handle)  # some drivers report reasons seen since the last read
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle is None:
            return
        try:
            end = violation_ns(self._nvml, self._handle)
            grown = {p: end[p] - self._start[p] for p in end if p in self._start}
            self.throttled = describe(current_reasons(self._nvml, self._handle), grown)
        finally:
            with contextlib.suppress(Exception):
                self._nvml.nvmlShutdown()
