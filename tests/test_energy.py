"""Power meters against fakes: a scripted NVML module and a powercap tree under tmp_path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pytest_slm.energy.meters import (
    CounterReset,
    MeterConfigError,
    MeterUnavailable,
    NvmlMeter,
    RaplMeter,
    open_meter,
)
from pytest_slm.energy.method import energy_metrics, measure


class NVMLError(Exception):
    pass


class NVMLError_NotSupported(NVMLError):
    pass


class NVMLError_LibraryNotFound(NVMLError):
    pass


GPU0 = "GPU-aaaa1111-0000"


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += s


class FakeNVML:
    """Two GPUs; GPU i draws ``power_w[i]`` watts; its counter integrates that over the fake clock."""

    NVML_TEMPERATURE_GPU = 0

    def __init__(
        self,
        clock: FakeClock,
        power_w: tuple[float, float] = (50.0, 300.0),
        counter: bool = True,
        missing: bool = False,
    ) -> None:
        self.clock, self.power, self.counter, self.missing = clock, list(power_w), counter, missing
        self.reset_at: float | None = None
        self._energy_j = [0.0, 0.0]
        self._t = clock()
        self.uuids = ["GPU-aaaa1111-0000", "GPU-bbbb2222-0000"]

    def _integrate(self) -> None:
        now = self.clock()
        for h in (0, 1):
            self._energy_j[h] += self.power[h] * (now - self._t)
        self._t = now

    def set_power(self, h: int, watts: float) -> None:
        self._integrate()
        self.power[h] = watts

    def nvmlInit(self) -> None:
        if self.missing:
            raise NVMLError_LibraryNotFound("NVML Shared Library Not Found")

    def nvmlShutdown(self) -> None:
        pass

    def nvmlDeviceGetCount(self) -> int:
        return 2

    def nvmlDeviceGetHandleByIndex(self, i: int) -> int:
        return i

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> int:
        return self.uuids.index(uuid)

    def nvmlDeviceGetUUID(self, h: int) -> bytes:
        return self.uuids[h].encode()

    def nvmlDeviceGetName(self, h: int) -> str:
        return f"Fake GPU {h}"

    def nvmlDeviceGetTotalEnergyConsumption(self, h: int) -> int:
        if not self.counter:
            raise NVMLError_NotSupported("Not Supported")
        self._integrate()
        if self.reset_at is not None and self.clock() >= self.reset_at:
            self._energy_j[h], self.reset_at = 0.0, None  # a driver reload restarts the counter
        return int(self._energy_j[h] * 1000)  # mJ

    def nvmlDeviceGetPowerUsage(self, h: int) -> int:
        return int(self.power[h] * 1000)  # mW

    def nvmlDeviceGetTemperature(self, h: int, sensor: int) -> int:
        return 40 + h


def workload(clock: FakeClock, seconds: float, tokens: int = 100, requests: int = 4) -> Any:
    def run() -> tuple[int, int]:
        clock.sleep(seconds)
        return tokens, requests

    return run


def test_the_chosen_gpu_is_metered_by_uuid() -> None:
    clock = FakeClock()
    meter = NvmlMeter("GPU-bbbb2222-0000", nvml=FakeNVML(clock), clock=clock)
    assert meter.gpu_name == "Fake GPU 1" and meter.method == "nvml-energy-counter"
    result = measure(meter, workload(clock, 2.0), idle_s=1.0, min_window_s=5.0, clock=clock, sleep=clock.sleep)
    assert result.window_s == 6.0 and result.repeats == 3  # 2 s passes until >= 5 s
    assert result.energy_j == pytest.approx(300.0 * 6.0) and result.avg_power_w == pytest.approx(300.0)


def test_metrics_units_and_directions() -> None:
    clock = FakeClock()
    nvml = FakeNVML(clock, power_w=(100.0, 0.0))
    meter = NvmlMeter(GPU0, nvml=nvml, clock=clock)

    def busy() -> tuple[int, int]:
        nvml.set_power(0, 250.0)  # the workload draws more than idle
        clock.sleep(1.0)
        return 50, 2

    result = measure(meter, busy, idle_s=2.0, min_window_s=5.0, clock=clock, sleep=clock.sleep)
    metrics = {m.name: m for m in energy_metrics(result, meter.describe())}
    assert metrics["idle_power_w"].value == pytest.approx(100.0)
    assert metrics["energy_j"].value == pytest.approx(1250.0) and metrics["energy_j"].unit == "J"
    assert metrics["dynamic_energy_j"].value == pytest.approx(1250.0 - 500.0)
    assert metrics["j_per_output_token"].value == pytest.approx(1250.0 / 250)
    assert metrics["output_tokens_per_j"].higher_is_better and metrics["output_tokens_per_j"].unit == "token/J"
    assert metrics["mwh_per_output_token"].value == pytest.approx(5.0 / 3.6)
    assert metrics["j_per_request"].value == pytest.approx(1250.0 / 10)
    assert not any(m.higher_is_better for n, m in metrics.items() if n != "output_tokens_per_j")
    assert metrics["energy_j"].info["crosscheck_ratio"] is not None


@pytest.mark.parametrize(("counter_scale", "ratio"), [(1.0, 1.0), (2.0, 0.5)])
def test_counter_is_crosschecked_against_sampled_power(counter_scale: float, ratio: float) -> None:
    clock = FakeClock()
    nvml = FakeNVML(clock, power_w=(200.0, 0.0))
    real = nvml.nvmlDeviceGetTotalEnergyConsumption
    nvml.nvmlDeviceGetTotalEnergyConsumption = lambda h: int(real(h) * counter_scale)  # type: ignore[method-assign]
    meter = NvmlMeter(GPU0, nvml=nvml, clock=clock)
    result = measure(
        meter,
        workload(clock, 1.0),
        idle_s=1.0,
        min_window_s=4.0,
        clock=clock,
        sleep=clock.sleep,
        sample_interval_s=3600,
    )
    assert result.crosscheck_ratio == pytest.approx(ratio)


def test_unsupported_counter_falls_back_to_power_sampling() -> None:
    clock = FakeClock()
    meter = NvmlMeter(GPU0, nvml=FakeNVML(clock, counter=False), clock=clock, sample_interval_s=3600)
    try:
        assert meter.method == "nvml-power-sampling"
        result = measure(meter, workload(clock, 1.0), idle_s=1.0, min_window_s=3.0, clock=clock, sleep=clock.sleep)
        assert result.energy_j == pytest.approx(50.0 * 3.0)
    finally:
        meter.close()


def test_counter_reset_is_reported_not_measured() -> None:
    clock = FakeClock()
    nvml = FakeNVML(clock)
    meter = NvmlMeter(GPU0, nvml=nvml, clock=clock)
    nvml.reset_at = 6.5  # settle 3 s + idle 1 s, then the second workload pass
    with pytest.raises(CounterReset, match="went backwards during the workload"):
        measure(meter, workload(clock, 1.0), idle_s=1.0, min_window_s=3.0, clock=clock, sleep=clock.sleep)


def test_missing_nvml_library_is_unavailable_with_reason() -> None:
    with pytest.raises(MeterUnavailable, match="NVML unavailable: NVMLError_LibraryNotFound"):
        NvmlMeter(GPU0, nvml=FakeNVML(FakeClock(), missing=True))


def make_zone(path: Path, name: str, energy: int, max_range: int = 1000) -> Path:
    path.mkdir(parents=True)
    (path / "name").write_text(name + "\n")
    (path / "energy_uj").write_text(f"{energy}\n")
    (path / "max_energy_range_uj").write_text(f"{max_range}\n")
    return path


def test_rapl_sums_packages_and_dram_and_survives_wraparound(tmp_path: Path) -> None:
    pkg = make_zone(tmp_path / "intel-rapl:0", "package-0", 900)
    make_zone(pkg / "intel-rapl:0:0", "core", 100)  # inside the package figure: not summed
    dram = make_zone(pkg / "intel-rapl:0:1", "dram", 10)
    meter = RaplMeter(tmp_path)
    assert [z.name for z in meter.zones] == ["intel-rapl:0:package-0", "intel-rapl:0:1:dram"]
    start = meter.energy_j()
    (pkg / "energy_uj").write_text("150\n")  # wrapped at 1000: +250 uJ
    (dram / "energy_uj").write_text("60\n")  # +50 uJ
    assert meter.energy_j() - start == pytest.approx(300e-6)


def test_rapl_unreadable_counter_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_zone(tmp_path / "intel-rapl:0", "package-0", 5)
    real = Path.read_text

    def deny(self: Path, *a: Any, **k: Any) -> str:
        if self.name == "energy_uj":
            raise PermissionError(13, "Permission denied")
        return real(self, *a, **k)

    monkeypatch.setattr(Path, "read_text", deny)
    with pytest.raises(MeterUnavailable, match=r"permission denied reading .*intel-rapl:0/energy_uj"):
        RaplMeter(tmp_path)


def test_auto_without_any_meter_gives_both_reasons(tmp_path: Path) -> None:
    with pytest.raises(MeterUnavailable, match=r"no power meter: NVML unavailable: .*; no RAPL powercap interface"):
        open_meter("auto", nvml=FakeNVML(FakeClock(), missing=True), powercap_root=tmp_path / "none")
    with pytest.raises(MeterUnavailable, match="disabled by --slm-power-meter none"):
        open_meter("none")
    with pytest.raises(ValueError, match="valid: auto, nvml, rapl, none"):
        open_meter("joulescope")


def test_auto_prefers_rapl_when_nvml_missing(tmp_path: Path) -> None:
    make_zone(tmp_path / "intel-rapl:0", "package-0", 5)
    meter = open_meter("auto", nvml=FakeNVML(FakeClock(), missing=True), powercap_root=tmp_path)
    assert meter.name == "rapl"


ENERGY_BENCH = (Path(__file__).resolve().parents[1] / "benches" / "test_energy.py").read_text()


def test_energy_tests_skip_with_reason_where_no_meter(slm_pytester, tmp_path: Path) -> None:
    slm_pytester.pytester.makepyfile(ENERGY_BENCH)
    result = slm_pytester.run("--slm-power-meter", "rapl", "--slm-powercap-root", str(tmp_path / "nothing"))
    result.assert_outcomes(skipped=2)
    reasons = {s["reason"] for s in slm_pytester.results()["skipped"]}
    assert reasons == {f"no RAPL powercap interface at {tmp_path / 'nothing'}"}


def test_energy_bench_on_fake_powercap(slm_pytester, tmp_path: Path) -> None:
    make_zone(tmp_path / "intel-rapl:0", "package-0", 5, max_range=1 << 40)
    slm_pytester.pytester.makepyfile(ENERGY_BENCH)
    result = slm_pytester.run(
        "--slm-power-meter",
        "rapl",
        "--slm-powercap-root",
        str(tmp_path),
        "--slm-energy-window-s",
        "0.05",
        "--slm-energy-idle-s",
        "0.01",
        "--slm-energy-settle-s",
        "0",
    )
    result.assert_outcomes(passed=2)
    recs = slm_pytester.results()["records"]
    names = {r["metric"] for r in recs}
    assert {"energy_j", "output_tokens_per_j", "mwh_per_output_token", "idle_power_w"} <= names
    assert {r["test"].split("[")[-1] for r in recs} == {"tiny-model-bf16-single]", "tiny-model-bf16-batch]"}


def test_auto_does_not_fall_back_to_rapl_over_an_unknown_gpu(tmp_path: Path) -> None:
    make_zone(tmp_path / "intel-rapl:0", "package-0", 5)
    with pytest.raises(MeterConfigError, match="GPU-cccc is not among the 2 GPU"):
        open_meter("auto", "GPU-cccc", nvml=FakeNVML(FakeClock()), powercap_root=tmp_path)


def test_nvml_without_a_chosen_gpu_is_unavailable_and_auto_uses_rapl(tmp_path: Path) -> None:
    make_zone(tmp_path / "intel-rapl:0", "package-0", 5)
    with pytest.raises(MeterUnavailable, match="measures on the CPU"):
        NvmlMeter(None, nvml=FakeNVML(FakeClock()))
    assert open_meter("auto", None, nvml=FakeNVML(FakeClock()), powercap_root=tmp_path).name == "rapl"


def test_window_is_cut_into_blocks_that_become_samples() -> None:
    clock = FakeClock()
    meter = NvmlMeter(GPU0, nvml=FakeNVML(clock, power_w=(100.0, 0.0)), clock=clock)
    result = measure(meter, workload(clock, 0.5, tokens=50), idle_s=1.0, min_window_s=5.0, clock=clock,
                     sleep=clock.sleep, sample_interval_s=3600)  # fmt: skip
    assert len(result.blocks) >= 5 and all(e > 0 and t > 0 for e, t in result.blocks)
    j = next(m for m in energy_metrics(result) if m.name == "j_per_output_token")
    assert len(j.samples) == len(result.blocks) and j.samples[0] == pytest.approx(100.0 * 1.0 / 100)


def test_throttling_and_counter_disagreement_make_the_window_invalid() -> None:
    clock = FakeClock()
    nvml = FakeNVML(clock, power_w=(200.0, 0.0))
    nvml.nvmlDeviceGetCurrentClocksEventReasons = lambda h: 0x40 | 0x04  # type: ignore[attr-defined]
    real = nvml.nvmlDeviceGetTotalEnergyConsumption
    nvml.nvmlDeviceGetTotalEnergyConsumption = lambda h: int(real(h) * 1.5)  # type: ignore[method-assign]
    meter = NvmlMeter(GPU0, nvml=nvml, clock=clock)
    result = measure(meter, workload(clock, 1.0), idle_s=1.0, min_window_s=3.0, clock=clock, sleep=clock.sleep,
                     sample_interval_s=3600)  # fmt: skip
    problems = result.problems()
    assert any("hardware thermal slowdown" in p for p in problems)
    assert any("disagree" in p for p in problems)
