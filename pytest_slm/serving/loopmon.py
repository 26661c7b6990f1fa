"""Is the client keeping up? Event-loop lag measured while a run is in flight. Pytest-free.

A ticker task asks the event loop to wake it every ``interval_s``; the time it actually wakes
minus the time it asked for is the loop's lag at that moment. An event loop busy parsing
streamed chunks (or starved of CPU by the server it measures) wakes the ticker late, and every
chunk timestamp taken in that loop is late by the same amount: lag bounds the client's own error.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from types import TracebackType
from typing import Any

from pytest_slm.stats import percentile

DEFAULT_INTERVAL_S = 0.005


class LoopLagMonitor:
    """``async with LoopLagMonitor() as mon: ...`` then ``mon.summary()`` (lateness in seconds)."""

    def __init__(self, interval_s: float = DEFAULT_INTERVAL_S) -> None:
        self.interval_s = interval_s
        self.lags_s: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _tick(self) -> None:
        due = time.perf_counter() + self.interval_s
        while True:
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            now = time.perf_counter()
            self.lags_s.append(now - due)
            # the next wake is one interval after this one: a late wake is not followed by a burst
            due = now + self.interval_s

    async def __aenter__(self) -> LoopLagMonitor:
        self._task = asyncio.get_running_loop().create_task(self._tick())
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def summary(self) -> dict[str, Any]:
        """Ticks, and p50/p99/max lateness (s); None where no tick happened."""
        return summarize(self.lags_s, self.interval_s)


def summarize(lags_s: list[float], interval_s: float | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"ticks": len(lags_s), "interval_s": interval_s}
    for name, q in (("p50", 50), ("p99", 99)):
        out[f"{name}_s"] = percentile(lags_s, q) if lags_s else None
    out["max_s"] = max(lags_s) if lags_s else None
    return out
