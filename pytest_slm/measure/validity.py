"""When a measurement cannot be trusted. Pytest-free.

Each check returns ``None`` or the reason, phrased for the report. A test that gets a reason
calls ``slm.invalid(reason)`` (usually through ``slm.validate(run.problems())``): its figures are
still recorded, but it fails as an *invalid measurement*, never as a regression, and is never
saved as a baseline.

- :func:`warmup_trend`: the repetitions are still trending (the engine or the machine was not
  warm yet): a significant rank correlation with the repetition index *and* a first third that
  differs from the last third by more than ``rel``.
- :func:`client_queueing`: the client received the first token later than the engine produced
  it by more than a margin: the harness, not the model, is being measured.
- :func:`preemptions`: the engine preempted requests (the KV cache was full): the workload
  measured eviction and recomputation, not the model's latency.
- :class:`CpuWindow`: CPU time other processes took during the window (and time the hypervisor
  stole): a measurement made while the machine was busy with something else.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: warm-up: the first and last thirds of the repetitions may differ by this much before a trend counts
WARMUP_REL = 0.10
WARMUP_ALPHA = 0.01
#: client-side queueing: first-token delivery (engine → client) allowed before the client is suspect
DELIVERY_ABS_S = 0.005
DELIVERY_REL = 0.10
#: foreign CPU load (cores busy outside this process tree) and steal allowed during a window
MAX_FOREIGN_CORES = 0.3
MAX_STEAL_FRACTION = 0.10
#: /proc/stat counts in clock ticks (10 ms): shorter windows cannot say how busy the machine was
MIN_CPU_WINDOW_S = 1.0
#: how the reasons of the CPU-load check start
FOREIGN_REASON_PREFIX = "the machine was busy with other work"
STEAL_REASON_PREFIX = "the hypervisor took"


def warmup_trend(values: Sequence[float], what: str, *, rel: float = WARMUP_REL) -> str | None:
    """A reason when per-repetition ``values`` still trend (too few to tell: no reason)."""
    n = len(values)
    if n < 6 or max(values) == min(values):  # too few to tell, or no variation at all
        return None
    from scipy import stats

    rho, p = stats.spearmanr(range(n), values)
    third = max(2, n // 3)
    first, last = statistics.median(values[:third]), statistics.median(values[-third:])
    if last == 0:
        return None
    change = first / last - 1
    if p < WARMUP_ALPHA and abs(change) > rel:
        return (
            f"warm-up not reached: {what} of the first {third} repetitions differs from the last {third} by "
            f"{100 * change:+.0f} % and trends with the repetition index (Spearman rho {rho:+.2f}, p {p:.2g}); "
            f"raise --slm-num-warmup"
        )
    return None


def client_queueing(delivery_s: Sequence[float], engine_ttft_s: Sequence[float]) -> str | None:
    """A reason when the first token reached the client much later than the engine produced it."""
    if not delivery_s or not engine_ttft_s:
        return None
    delivery = statistics.median(delivery_s)
    ttft = statistics.median(engine_ttft_s)
    margin = max(DELIVERY_ABS_S, DELIVERY_REL * ttft)
    if delivery > margin:
        return (
            f"client-side queueing: the first token reached the client {1000 * delivery:.1f} ms (p50) after the "
            f"engine produced it, beyond the {1000 * margin:.1f} ms margin (max of {1000 * DELIVERY_ABS_S:g} ms "
            f"and {100 * DELIVERY_REL:g} % of the engine-side TTFT)"
        )
    return None


def preemptions(count: int, requests: int) -> str | None:
    if count > 0:
        return (
            f"the engine preempted requests {count} time(s) over {requests} request(s): the KV cache was full, so "
            f"the figures include eviction and recomputation (lower the concurrency or raise the KV-cache size)"
        )
    return None


@dataclass(frozen=True)
class CpuUsage:
    """What the machine's CPUs did during a window, in cores (1.0 = one core busy throughout)."""

    wall_s: float
    cores: int
    own_cores: float
    busy_cores: float
    steal_fraction: float

    @property
    def foreign_cores(self) -> float:
        return max(0.0, self.busy_cores - self.own_cores)

    def problem(self, max_foreign: float = MAX_FOREIGN_CORES, max_steal: float = MAX_STEAL_FRACTION) -> str | None:
        if self.wall_s < MIN_CPU_WINDOW_S:
            return None
        if self.foreign_cores > max_foreign:
            return (
                f"{FOREIGN_REASON_PREFIX}: other processes used {self.foreign_cores:.2f} of "
                f"{self.cores} cores on average during the {self.wall_s:.1f} s window (allowed {max_foreign:g}, "
                f"--slm-max-foreign-load)"
            )
        if self.steal_fraction > max_steal:
            return (
                f"{STEAL_REASON_PREFIX} {100 * self.steal_fraction:.0f} % of the CPU time during the "
                f"{self.wall_s:.1f} s window (steal; allowed {100 * max_steal:g} %)"
            )
        return None


def machine_made(reasons: Sequence[str]) -> bool:
    """Whether every reason a figure is invalid names the machine, not the measurement or the code:
    other processes, the hypervisor, the reference kernel changing speed around the window or since
    the baseline (:mod:`pytest_slm.measure.machine`), the GPU slowing itself down (NVML). A reason
    may carry the label of the load level it came from (``"c1: the machine changed speed ..."``, a
    saturation curve's level). False without reasons."""
    from pytest_slm.measure.gpu_clocks import THROTTLE_REASON_PREFIX
    from pytest_slm.measure.machine import SHIFT_REASON_PREFIX, WINDOW_REASON_PREFIX

    prefixes = (
        FOREIGN_REASON_PREFIX,
        STEAL_REASON_PREFIX,
        WINDOW_REASON_PREFIX,
        SHIFT_REASON_PREFIX,
        THROTTLE_REASON_PREFIX,
    )

    def unlabelled(reason: str) -> str:
        label, sep, rest = reason.partition(": ")
        return rest if sep and label and " " not in label else reason

    return bool(reasons) and all(unlabelled(r).startswith(prefixes) for r in reasons)


def _proc_stat(root: Path) -> tuple[float, float, float] | None:
    """(busy, steal, total) jiffies over all CPUs from /proc/stat."""
    try:
        fields = (root / "stat").read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return None
    values = [float(x) for x in fields[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0.0)
    steal = values[7] if len(values) > 7 else 0.0
    total = sum(values[:8])  # guest time (fields 9-10) is already counted in user and nice
    return total - idle - steal, steal, total


def _own_cpu_s() -> float | None:
    """CPU seconds used so far by this process and all its descendants (the engine's workers)."""
    try:
        import psutil
    except ImportError:
        return None
    proc = psutil.Process()
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            continue
    return total


class CpuWindow:
    """Context manager measuring CPU use during a window: ``with CpuWindow() as w: ...; w.usage``.

    Children that exit inside the window are missed (their time counts as foreign), which errs on
    the side of calling a window busy."""

    def __init__(self, proc_root: Path = Path("/proc")) -> None:
        self.proc_root = proc_root
        self.usage: CpuUsage | None = None
        self._start: Any = None

    def __enter__(self) -> CpuWindow:
        self._start = (time.perf_counter(), _proc_stat(self.proc_root), _own_cpu_s())
        return self

    def __exit__(self, *exc: object) -> None:
        t0, stat0, own0 = self._start
        wall = time.perf_counter() - t0
        stat1, own1 = _proc_stat(self.proc_root), _own_cpu_s()
        if stat0 is None or stat1 is None or own0 is None or own1 is None or wall <= 0:
            return
        ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        busy_s = (stat1[0] - stat0[0]) / ticks
        steal = stat1[1] - stat0[1]
        total = stat1[2] - stat0[2]
        self.usage = CpuUsage(
            wall_s=wall,
            cores=os.cpu_count() or 1,
            own_cores=(own1 - own0) / wall,
            busy_cores=busy_s / wall,
            steal_fraction=steal / total if total > 0 else 0.0,
        )
