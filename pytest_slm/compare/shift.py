"""Has the machine changed speed since the baseline was saved? The gate's test on the reference kernel. Pytest-free.

Every measured window carries the reference kernel's time around it (``info["machine"]``, written
by :func:`pytest_slm.measure.machine.describe`). :func:`machine_shift` holds this session's kernel
time against the saved baseline sessions': a shift beyond :data:`SHIFT_TOLERANCE` and outside the
kernel's own between-session prediction interval makes a speed comparison invalid ("the machine is
7 % slower than when the baseline was saved"), never a regression of the model.
:func:`pooled_spread` pools the kernel's window-to-window spread over a whole baseline file, so a
metric with few saved sessions still gets a well-founded interval.

Only the gate uses this; the probe itself, and the check of one window (did the machine change
speed *during* it), stay in :mod:`pytest_slm.measure.machine`.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pytest_slm.measure.machine import KERNEL, SHIFT_REASON_PREFIX

#: the session's kernel time is a machine shift when it falls outside the saved sessions' kernel
#: times' SHIFT_CONFIDENCE prediction interval (t, on logs) *and* differs by more than
#: SHIFT_TOLERANCE; with fewer than MIN_PROBE_SESSIONS saved the kernel's own spread is unknown and
#: nothing is called a shift (the gate itself needs as many sessions to call a regression)
SHIFT_TOLERANCE = 0.03
SHIFT_CONFIDENCE = 0.99
MIN_PROBE_SESSIONS = 3


@dataclass(frozen=True)
class Shift:
    """The machine's speed in this session against the saved sessions' (kernel time ratio)."""

    ratio: float  # current kernel time / geometric mean of the saved sessions' (> 1: slower now)
    allowed: float  # the relative change allowed before the comparison is invalid (inf: too few sessions)
    sessions: int

    @property
    def exceeded(self) -> bool:
        return abs(math.log(self.ratio)) > math.log1p(self.allowed)

    def reason(self) -> str:
        direction = "slower" if self.ratio > 1 else "faster"
        return (
            f"{SHIFT_REASON_PREFIX}{100 * abs(self.ratio - 1):.1f} % {direction} than when the baseline was saved "
            f"(reference kernel {KERNEL}: {self.ratio:.3f}x its time over {self.sessions} saved session(s), "
            f"allowed {100 * self.allowed:.1f} %): the figures cannot tell the code from the machine; "
            f"rerun, or re-save the baseline on this machine with --slm-baseline-accept"
        )


def machine_shift(
    current: Mapping[str, Any] | None,
    history: Sequence[Mapping[str, Any] | None],
    *,
    tolerance: float = SHIFT_TOLERANCE,
    pooled: tuple[float, float] | None = None,
) -> Shift | None:
    """This session's kernel time against the saved sessions' (``info["machine"]`` dicts); None
    when either side has no probe of the same kernel on the same kind of device. The change
    allowed is the larger of ``tolerance`` and the half-width of the saved kernel times'
    :data:`SHIFT_CONFIDENCE` prediction interval; unlimited below :data:`MIN_PROBE_SESSIONS`.
    ``pooled``: the kernel's standard deviation (of log times) and its degrees of freedom pooled
    over every window of the baseline file (:func:`pooled_spread`), used instead of these few
    sessions' own when it rests on more degrees of freedom."""
    if not current or not current.get("probe_s"):
        return None
    same = [
        float(h["probe_s"])
        for h in history
        if h and h.get("probe_s") and h.get("kernel") == current.get("kernel")
        and str(h.get("device", "")).split(":")[0] == str(current.get("device", "")).split(":")[0]
    ]  # fmt: skip
    if not same:
        return None
    logs = [math.log(s) for s in same]
    k = len(logs)
    mu = statistics.fmean(logs)
    allowed = math.inf
    if k >= MIN_PROBE_SESSIONS:
        from scipy import stats

        sd, df = statistics.stdev(logs), float(k - 1)
        if pooled is not None and pooled[1] > df:
            sd, df = pooled
        half = float(stats.t.ppf(0.5 + SHIFT_CONFIDENCE / 2, df)) * sd * math.sqrt(1 + 1 / k)
        allowed = max(tolerance, math.expm1(half))
    return Shift(ratio=float(current["probe_s"]) / math.exp(mu), allowed=allowed, sessions=k)


def pooled_spread(
    histories: Sequence[Sequence[Mapping[str, Any] | None]], kernel: str, device: str
) -> tuple[float, float] | None:
    """The kernel's window-to-window spread pooled over many metrics' saved sessions: the standard
    deviation of log kernel times around each history's own mean, and its degrees of freedom
    (``histories``: per baseline entry, its sessions' ``info["machine"]`` dicts). Only probes of
    ``kernel`` on ``device``'s kind count; histories with the very same times (two figures of one
    window) count once. None without two degrees of freedom."""
    kind = device.split(":")[0]
    seen: set[tuple[float, ...]] = set()
    squares, df = 0.0, 0
    for history in histories:
        times = tuple(
            float(h["probe_s"])
            for h in history
            if h and h.get("probe_s") and h.get("kernel") == kernel and str(h.get("device", "")).split(":")[0] == kind
        )
        if len(times) < 2 or times in seen:
            continue
        seen.add(times)
        logs = [math.log(t) for t in times]
        mu = statistics.fmean(logs)
        squares += sum((x - mu) ** 2 for x in logs)
        df += len(logs) - 1
    if df < 2:
        return None
    return math.sqrt(squares / df), float(df)
