"""Energy meters: NVML's energy counter (power sampling where the counter is unsupported) and RAPL.

Every meter exposes a cumulative ``energy_j()``; the measurement takes deltas. Counter resets
and wrap-arounds are handled here so a delta is either right or an error, never a wrong number.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from pytest_slm.measure import gpu_clocks

POWERCAP_ROOT = Path("/sys/class/powercap")


class MeterUnavailable(Exception):
    """No usable meter of this kind here; the message is the skip reason."""


class MeterConfigError(ValueError):
    """A meter asked for a GPU NVML does not have.

    Not a reason to skip or to fall back to another meter: ``auto`` must not quietly meter the
    CPU because of a typo in the GPU selection."""


class CounterReset(Exception):
    """An energy counter went backwards (driver reload, GPU reset): the window is invalid."""


class PowerMeter(Protocol):
    """A source of cumulative energy in joules."""

    name: str
    method: str

    def energy_j(self) -> float:
        """Cumulative energy since an arbitrary origin (monotonic unless the device reset)."""
        ...

    def power_w(self) -> float | None:
        """Instantaneous power if the device reports it, for the cross-check."""
        ...

    def temperature_c(self) -> float | None: ...

    def describe(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


@runtime_checkable
class ReportsThrottling(Protocol):
    """A meter whose device says what slowed it down (NVML's clock-event reasons) since the last read."""

    def throttle_reasons(self) -> list[str]: ...


# -- NVML ----------------------------------------------------------------------------------
def _decode(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class NvmlMeter:
    """One NVIDIA GPU through NVML.

    Uses ``nvmlDeviceGetTotalEnergyConsumption`` (mJ since driver load, Volta and newer) where
    supported; elsewhere a background thread samples ``nvmlDeviceGetPowerUsage`` (mW) and
    integrates it (trapezoid rule).
    """

    name = "nvml"

    def __init__(
        self,
        gpu_uuid: str | None,
        nvml: Any = None,
        sample_interval_s: float = 0.02,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if nvml is None:
            try:
                import pynvml
            except ImportError as exc:
                raise MeterUnavailable(f"NVML unavailable: nvidia-ml-py is not installed ({exc})") from None
            nvml = pynvml
        self.nvml = nvml
        try:
            nvml.nvmlInit()
        except Exception as exc:  # NVMLError_LibraryNotFound, DriverNotLoaded, ...
            raise MeterUnavailable(f"NVML unavailable: {type(exc).__name__}: {exc}") from None
        if gpu_uuid is None:
            with contextlib.suppress(Exception):
                nvml.nvmlShutdown()
            raise MeterUnavailable("NVML unavailable: this process measures on the CPU (no GPU was chosen)")
        count = nvml.nvmlDeviceGetCount()
        uuids = [_decode(nvml.nvmlDeviceGetUUID(nvml.nvmlDeviceGetHandleByIndex(i))) for i in range(count)]
        if gpu_uuid not in uuids:
            raise MeterConfigError(f"GPU {gpu_uuid} is not among the {count} GPU(s) NVML sees: {uuids}")
        self.handle = nvml.nvmlDeviceGetHandleByUUID(gpu_uuid)
        self.uuid = _decode(nvml.nvmlDeviceGetUUID(self.handle))
        self.gpu_name = _decode(nvml.nvmlDeviceGetName(self.handle))
        self.clock = clock
        self._sampler: _PowerSampler | None = None
        try:
            nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle)
            self.method = "nvml-energy-counter"
        except Exception as exc:
            if "NotSupported" not in type(exc).__name__:
                raise MeterUnavailable(f"NVML energy counter failed: {type(exc).__name__}: {exc}") from None
            self.method = "nvml-power-sampling"
            self._sampler = _PowerSampler(self._power_raw_w, sample_interval_s, clock)
            self._sampler.start()

    def _power_raw_w(self) -> float:
        return float(self.nvml.nvmlDeviceGetPowerUsage(self.handle)) / 1000.0

    def energy_j(self) -> float:
        if self._sampler is not None:
            return self._sampler.energy_j()
        return float(self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle)) / 1000.0

    def power_w(self) -> float | None:
        try:
            return self._power_raw_w()
        except Exception:
            return None

    def temperature_c(self) -> float | None:
        try:
            return float(self.nvml.nvmlDeviceGetTemperature(self.handle, self.nvml.NVML_TEMPERATURE_GPU))
        except Exception:
            return None

    def describe(self) -> dict[str, Any]:
        return {"meter": self.name, "method": self.method, "gpu_name": self.gpu_name, "gpu_uuid": self.uuid}

    def throttle_reasons(self) -> list[str]:
        """Clock slowdowns the driver reports now that distort a measurement (thermal, power brake,
        hardware slowdown); an idle or power-capped GPU is not throttled in this sense."""
        return gpu_clocks.current_reasons(self.nvml, self.handle)

    def close(self) -> None:
        if self._sampler is not None:
            self._sampler.stop()
        with contextlib.suppress(Exception):
            self.nvml.nvmlShutdown()


@dataclass
class _PowerSampler:
    """Integrates sampled power into energy on a daemon thread."""

    read_w: Callable[[], float]
    interval_s: float
    clock: Callable[[], float]
    _energy_j: float = 0.0
    _last: tuple[float, float] | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _thread: threading.Thread | None = None

    def sample(self) -> None:
        now, watts = self.clock(), self.read_w()
        with self._lock:
            if self._last is not None:
                t0, w0 = self._last
                self._energy_j += (now - t0) * (w0 + watts) / 2.0
            self._last = (now, watts)

    def start(self) -> None:
        self.sample()
        self._thread = threading.Thread(target=self._run, name="slm-power-sampler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def energy_j(self) -> float:
        self.sample()
        with self._lock:
            return self._energy_j

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)


# -- RAPL ------------------------------------------------------------------------------------
@dataclass
class _Zone:
    name: str
    energy_file: Path
    max_range_uj: int
    last_uj: int = 0
    total_uj: int = 0

    def read(self) -> None:
        raw = int(self.energy_file.read_text().strip())
        # the counter wraps at max_energy_range_uj; one wrap per read interval is assumed
        delta = raw - self.last_uj if raw >= self.last_uj else raw + self.max_range_uj - self.last_uj
        self.total_uj += delta
        self.last_uj = raw


class RaplMeter:
    """CPU package (and DRAM, where present) energy from the powercap interface.

    Only top-level ``intel-rapl:N`` packages and their ``dram`` subzones are summed (core and
    uncore subzones are already inside the package figure). AMD CPUs expose the same files.
    """

    name = "rapl"
    method = "rapl-energy-counter"

    def __init__(self, root: Path = POWERCAP_ROOT) -> None:
        if not root.is_dir():
            raise MeterUnavailable(f"no RAPL powercap interface at {root}")
        packages = sorted(p for p in root.glob("intel-rapl:*") if p.name.count(":") == 1)
        if not packages:
            raise MeterUnavailable(f"no RAPL package zones (intel-rapl:N) under {root}")
        self.zones: list[_Zone] = []
        for pkg in packages:
            self.zones.append(self._zone(pkg))
            for sub in sorted(pkg.glob(f"{pkg.name}:*")):
                if _read(sub / "name") == "dram":
                    self.zones.append(self._zone(sub))
        for zone in self.zones:
            zone.last_uj = int(_read(zone.energy_file))

    @staticmethod
    def _zone(path: Path) -> _Zone:
        max_range = int(_read(path / "max_energy_range_uj"))
        return _Zone(f"{path.name}:{_read(path / 'name')}", path / "energy_uj", max_range)

    def energy_j(self) -> float:
        for zone in self.zones:
            zone.read()
        return sum(z.total_uj for z in self.zones) / 1e6

    def power_w(self) -> float | None:
        return None

    def temperature_c(self) -> float | None:
        return None

    def describe(self) -> dict[str, Any]:
        return {"meter": self.name, "method": self.method, "zones": [z.name for z in self.zones]}

    def close(self) -> None:
        return None


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except PermissionError:
        raise MeterUnavailable(
            f"permission denied reading {path}; RAPL counters are root-only on most kernels "
            f"(run as root, or `sudo chmod o+r {path.parent}/energy_uj`)"
        ) from None
    except OSError as exc:
        raise MeterUnavailable(f"cannot read {path}: {exc.strerror}") from None


KINDS = ("auto", "nvml", "rapl", "none")


def open_meter(
    kind: str,
    gpu_uuid: str | None = None,
    *,
    powercap_root: Path = POWERCAP_ROOT,
    nvml: Any = None,
) -> PowerMeter:
    """Open the meter ``kind`` asks for on the GPU ``gpu_uuid`` (the process's device choice,
    :mod:`pytest_slm.devices`); ``auto`` tries NVML, then RAPL."""
    if kind not in KINDS:
        raise ValueError(f"unknown power meter {kind!r}; valid: {', '.join(KINDS)}")
    if kind == "none":
        raise MeterUnavailable("power metering disabled by --slm-power-meter none")
    if kind == "nvml":
        return NvmlMeter(gpu_uuid, nvml=nvml)
    if kind == "rapl":
        return RaplMeter(powercap_root)
    reasons = []
    for opener in (lambda: NvmlMeter(gpu_uuid, nvml=nvml), lambda: RaplMeter(powercap_root)):
        try:
            return opener()
        except MeterUnavailable as exc:
            reasons.append(str(exc))
    raise MeterUnavailable("no power meter: " + "; ".join(reasons))
