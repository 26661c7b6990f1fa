"""How energy is measured: idle power first, then the workload repeated over a window long enough
for the counter (which updates about every 100 ms), from counter deltas on the right device.

Not "sampled average power × wall time": the counter integrates on the device, idle power is
measured and reported (and subtracted for the dynamic figures), and where the meter can also
report instantaneous power, the integrated samples cross-check the counter over the same window.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from pytest_slm.energy.meters import CounterReset, PowerMeter, ReportsThrottling, _PowerSampler
from pytest_slm.measure import gpu_clocks
from pytest_slm.record import Metric

#: joules in one milliwatt-hour
J_PER_MWH = 3.6
#: sampled power and the counter agree to 0.998-0.999 on a steady decode (H100); beyond this, one is wrong
CROSSCHECK_TOLERANCE = 0.10
#: blocks of passes the window is cut into (each at least a second: the counter updates every ~100 ms)
BLOCKS = 5


@dataclass(frozen=True)
class EnergyResult:
    """One measurement window. Energies in J, powers in W, times in s."""

    method: str
    idle_power_w: float
    idle_window_s: float
    window_s: float
    energy_j: float
    repeats: int
    output_tokens: int
    requests: int
    temperature_start_c: float | None = None
    temperature_end_c: float | None = None
    sampled_energy_j: float | None = None
    #: (energy J, output tokens) of each block of passes (the per-repetition evidence)
    blocks: tuple[tuple[float, int], ...] = ()
    #: why the device was slowed down during the window (NVML clock event reasons), if it was
    throttled: tuple[str, ...] = ()

    @property
    def avg_power_w(self) -> float:
        return self.energy_j / self.window_s

    @property
    def dynamic_energy_j(self) -> float:
        return self.energy_j - self.idle_power_w * self.window_s

    @property
    def idle_suspect(self) -> bool:
        """Idle power above the workload's average: the idle window was not idle."""
        return self.idle_power_w > self.avg_power_w

    @property
    def crosscheck_ratio(self) -> float | None:
        """Integrated sampled power ÷ counter energy over the same window (1.0 = agreement)."""
        if self.sampled_energy_j is None or self.energy_j <= 0:
            return None
        return self.sampled_energy_j / self.energy_j

    def problems(self) -> list[str]:
        """Why this window cannot be trusted (empty when it can)."""
        out = []
        ratio = self.crosscheck_ratio
        if ratio is not None and abs(ratio - 1) > CROSSCHECK_TOLERANCE:
            out.append(
                f"the energy counter and the integrated sampled power disagree: sampled ÷ counter = {ratio:.3f} "
                f"(allowed 1 ± {CROSSCHECK_TOLERANCE:g})"
            )
        if throttled := gpu_clocks.problem(self.throttled):
            out.append(throttled)
        return out


def _delta(start: float, end: float, what: str) -> float:
    if end < start:
        raise CounterReset(
            f"energy counter went backwards during the {what} ({start:.3f} J -> {end:.3f} J); "
            "the device or driver reset, so this window cannot be measured"
        )
    return end - start


def measure(
    meter: PowerMeter,
    workload: Callable[[], tuple[int, int]],
    *,
    idle_s: float = 2.0,
    settle_s: float = 3.0,
    min_window_s: float = 5.0,
    min_repeats: int = 1,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    sample_interval_s: float = 0.05,
) -> EnergyResult:
    """Measure idle power for ``idle_s``, then repeat ``workload`` (returns output tokens and
    requests of one pass) until at least ``min_window_s`` has elapsed and ``min_repeats`` passes ran.

    ``settle_s`` of quiet come first: right after earlier work a GPU still draws well above idle
    for a second or two (seen on an H100: 285 W "idle" right after matrix products, against
    115-135 W settled), which would inflate idle power and turn dynamic energy negative.
    """
    sleep(settle_s)
    e0, t0 = meter.energy_j(), clock()
    sleep(idle_s)
    e1, t1 = meter.energy_j(), clock()
    idle_window = t1 - t0
    idle_w = _delta(e0, e1, "idle measurement") / idle_window if idle_window > 0 else 0.0

    sampler = None
    if meter.method != "nvml-power-sampling" and meter.power_w() is not None:
        sampler = _PowerSampler(lambda: meter.power_w() or 0.0, sample_interval_s, clock)
        sampler.start()
    temp0 = meter.temperature_c()
    throttle = meter.throttle_reasons if isinstance(meter, ReportsThrottling) else None
    if throttle is not None:
        throttle()  # clear: NVML reports reasons seen since the last read on some drivers
    s0, w0 = meter.energy_j(), clock()
    repeats = tokens = requests = 0
    blocks: list[tuple[float, int]] = []
    block_e, block_t, block_tokens = s0, w0, 0
    block_s = max(1.0, min_window_s / BLOCKS)
    while True:
        tok, req = workload()
        tokens, requests, repeats = tokens + tok, requests + req, repeats + 1
        block_tokens += tok
        now = clock()
        if now - block_t >= block_s:
            e = meter.energy_j()
            blocks.append((_delta(block_e, e, "workload"), block_tokens))
            block_e, block_t, block_tokens = e, now, 0
        if now - w0 >= min_window_s and repeats >= min_repeats and len(blocks) >= min(BLOCKS, repeats):
            break
    s1, w1 = meter.energy_j(), clock()
    sampled = None
    if sampler is not None:
        sampled = sampler.energy_j()
        sampler.stop()
    return EnergyResult(
        method=meter.method,
        idle_power_w=idle_w,
        idle_window_s=idle_window,
        window_s=w1 - w0,
        energy_j=_delta(s0, s1, "workload"),
        repeats=repeats,
        output_tokens=tokens,
        requests=requests,
        temperature_start_c=temp0,
        temperature_end_c=meter.temperature_c(),
        sampled_energy_j=sampled,
        blocks=tuple(blocks),
        throttled=tuple(throttle()) if throttle is not None else (),
    )


def energy_metrics(
    result: EnergyResult, meter_facts: dict[str, Any] | None = None, workload: dict[str, Any] | None = None
) -> list[Metric]:
    """The energy figures of one window, each with its unit and direction; ``j_per_output_token``
    carries one value per block of the window as its samples (the gate's per-repetition evidence)."""
    info = {
        **({"workload": workload} if workload else {}),
        **asdict(result),
        "crosscheck_ratio": result.crosscheck_ratio,
        "idle_suspect": result.idle_suspect,
        "meter": meter_facts or {},
    }
    n = result.repeats
    tokens = max(result.output_tokens, 1)

    def m(name: str, value: float, unit: str, higher: bool = False, samples: tuple[float, ...] = ()) -> Metric:
        return Metric(name, value, unit, higher_is_better=higher, n=n, samples=samples, info=info)

    per_block = tuple(e / t for e, t in result.blocks if t > 0 and e > 0)
    return [
        m("energy_j", result.energy_j, "J"),
        m("avg_power_w", result.avg_power_w, "W"),
        m("idle_power_w", result.idle_power_w, "W"),
        m("dynamic_energy_j", result.dynamic_energy_j, "J"),
        m("j_per_output_token", result.energy_j / tokens, "J/token", samples=per_block),
        m("dynamic_j_per_output_token", result.dynamic_energy_j / tokens, "J/token"),
        m(
            "output_tokens_per_j",
            result.output_tokens / result.energy_j if result.energy_j > 0 else 0.0,
            "token/J",
            higher=True,
        ),
        m("j_per_request", result.energy_j / max(result.requests, 1), "J/request"),
        m("mwh_per_output_token", result.energy_j / tokens / J_PER_MWH, "mWh/token"),
    ]
