"""measure.gpu_clocks: NVML's account of a GPU slowing itself down during a measured window, read
through a fake NVML (no GPU here), and how a throttled window becomes an invalid measurement."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from pytest_slm.measure import gpu_clocks, machine
from pytest_slm.measure.machine import Probe, window_problems
from pytest_slm.measure.validity import machine_made


class FakeNvml:
    """The NVML calls a window makes, with counters the test moves while the window is open."""

    def __init__(self, uuid: str = "GPU-fake-0000") -> None:
        self.uuid = uuid
        self.violation = {0: 5_000_000, 1: 7_000_000, 3: 0, 5: 0}  # ns so far, per policy
        self.reasons = 0
        self.unsupported: set[int] = set()
        self.inits = 0

    def nvmlInit(self) -> None:
        self.inits += 1

    def nvmlShutdown(self) -> None:
        self.inits -= 1

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> str:
        if uuid != self.uuid:
            raise RuntimeError(f"no GPU {uuid}")
        return uuid

    def nvmlDeviceGetViolationStatus(self, handle: str, policy: int) -> Any:
        if policy in self.unsupported:
            raise RuntimeError("NVMLError_NotSupported")
        return SimpleNamespace(referenceTime=0, violationTime=self.violation[policy])

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle: str) -> int:
        return self.reasons


def test_a_quiet_window_reports_nothing_and_releases_nvml() -> None:
    nvml = FakeNvml()
    with gpu_clocks.GpuWindow(nvml.uuid, nvml=nvml) as window:
        nvml.violation[0] += 10**9  # a power cap held the clocks: a loaded GPU's steady state, not counted
        nvml.reasons = 0x04  # software power cap: not a slowdown in this sense
    assert window.throttled == () and nvml.inits == 0


def test_thermal_violation_time_during_the_window_is_named_with_its_duration() -> None:
    nvml = FakeNvml()
    with gpu_clocks.GpuWindow(nvml.uuid, nvml=nvml) as window:
        nvml.violation[1] += 250_000_000  # 250 ms held by the thermal policy
    assert window.throttled == ("thermal limit for 250 ms",)
    problem = gpu_clocks.problem(window.throttled)
    assert problem is not None and problem.startswith(gpu_clocks.THROTTLE_REASON_PREFIX)


def test_violations_before_the_window_do_not_count_and_current_reasons_do() -> None:
    nvml = FakeNvml()
    nvml.violation[3] = 9 * 10**9  # the board limit held the clocks before this window
    with gpu_clocks.GpuWindow(nvml.uuid, nvml=nvml) as window:
        nvml.reasons = 0x40 | 0x80
    assert window.throttled == ("hardware thermal slowdown", "hardware power brake")


def test_missing_nvml_gpu_or_counter_leaves_the_window_unchecked() -> None:
    nvml = FakeNvml()
    with gpu_clocks.GpuWindow("GPU-other", nvml=nvml) as window:
        nvml.violation[1] += 10**9
    assert window.throttled == ()
    with gpu_clocks.GpuWindow(None, nvml=nvml) as window:
        pass
    assert window.throttled == ()
    nvml.unsupported = {1, 3, 5}
    with gpu_clocks.GpuWindow(nvml.uuid, nvml=nvml) as window:
        nvml.violation[1] += 10**9  # the GPU does not report it: nothing to say, never a failure
    assert window.throttled == ()


def _probe(seconds: float, **kw: Any) -> Probe:
    return Probe(seconds, 0.01, 45, "cuda:0", **kw)


def test_bracket_on_a_gpu_makes_a_throttled_window_invalid_as_the_machines_doing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(machine, "CONFIRM_AFTER_S", 0.0)
    nvml = FakeNvml()
    prober = machine.SessionProber(lambda: _probe(0.00073), gpu_uuid=nvml.uuid)
    with machine.Bracket(prober, nvml=nvml) as kernel:
        nvml.violation[1] += 40_000_000
    before, after = kernel.probes
    assert after is not None and after.throttled == ("thermal limit for 40 ms",)
    reasons = window_problems(before, after)
    assert len(reasons) == 1 and machine_made(reasons)
    assert machine.describe(before, after)["throttled"] == ["thermal limit for 40 ms"]  # type: ignore[index]
    with machine.Bracket(prober, nvml=nvml) as kernel:  # the next window is quiet again
        pass
    assert window_problems(*kernel.probes) == [] and "throttled" not in machine.describe(*kernel.probes)  # type: ignore[operator]


def test_session_prober_watches_the_engines_gpu_only_on_cuda() -> None:
    gpu = SimpleNamespace(uuid="GPU-fake-0003")
    on_gpu = SimpleNamespace(machine_probe=lambda: None, device=SimpleNamespace(on_cuda=True, gpu=gpu))
    on_cpu = SimpleNamespace(machine_probe=lambda: None, device=SimpleNamespace(on_cuda=False, gpu=None))
    assert machine.session_prober(on_gpu).gpu_uuid == "GPU-fake-0003"  # type: ignore[union-attr]
    assert machine.session_prober(on_cpu).gpu_uuid is None  # type: ignore[union-attr]
    assert machine.session_prober(on_gpu, enabled=False) is None
    assert machine.session_prober(SimpleNamespace()) is None  # an engine without a kernel timer
