"""The machine's achievable memory bandwidth, measured once and cached per fingerprint.

STREAM's copy (``a = b``: 2 × N bytes moved) and triad (``a = b + s·c``: 3 × N bytes) with torch
on the device the engine runs on, arrays well beyond the last-level cache, best of several
repetitions after a warm-up (STREAM's own convention: the best time is the achievable rate).
torch's CPU kernels use every intra-op thread, as vLLM's CPU backend does for decode.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pytest_slm import atomic

#: arrays are at least this many times the last-level cache, and at least MIN_ARRAY_BYTES
LLC_MULTIPLE = 8
MIN_ARRAY_BYTES = 128 * 2**20
MAX_ARRAY_BYTES = 1024 * 2**20
REPETITIONS = 7
CACHE_VERSION = 1


@dataclass(frozen=True)
class Bandwidth:
    """Measured bandwidth in bytes/s; ``bytes_per_s`` is the best kernel's (the roofline's ceiling)."""

    bytes_per_s: float
    copy_bytes_per_s: float
    triad_bytes_per_s: float
    array_bytes: int
    repetitions: int
    device: str
    method: str
    llc_bytes: int | None = None
    measured_at: str = ""
    cached: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def last_level_cache_bytes(root: Path = Path("/sys/devices/system/cpu/cpu0/cache")) -> int | None:
    """The largest cache of CPU 0 from sysfs (e.g. ``32768K``), or None where sysfs does not say."""
    sizes = []
    for index in root.glob("index*"):
        try:
            text = (index / "size").read_text().strip()
        except OSError:
            continue
        mult = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1:], 1)
        digits = text[:-1] if text[-1:] in "KMG" else text
        if digits.isdigit():
            sizes.append(int(digits) * mult)
    return max(sizes) if sizes else None


def array_bytes_for(llc: int | None) -> int:
    want = max(MIN_ARRAY_BYTES, LLC_MULTIPLE * (llc or 0))
    return min(want, MAX_ARRAY_BYTES)


def measure(device: str = "cpu", array_bytes: int | None = None, repetitions: int = REPETITIONS) -> Bandwidth:
    """Run copy and triad ``repetitions`` times each (after one warm-up) and keep the best rates."""
    import torch

    llc = last_level_cache_bytes() if device == "cpu" else None
    size = array_bytes or array_bytes_for(llc)
    n = size // 4
    a = torch.zeros(n, dtype=torch.float32, device=device)
    b = torch.ones(n, dtype=torch.float32, device=device)
    c = torch.full((n,), 2.0, dtype=torch.float32, device=device)

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    def best(kernel: Any) -> float:
        kernel()  # warm-up: page faults and first-touch happen here, not in the timing
        sync()
        times = []
        for _ in range(repetitions):
            t0 = time.perf_counter()
            kernel()
            sync()
            times.append(time.perf_counter() - t0)
        return min(times)

    copy_s = best(lambda: a.copy_(b))
    triad_s = best(lambda: torch.add(b, c, alpha=3.0, out=a))
    copy_bw = 2 * n * 4 / copy_s
    triad_bw = 3 * n * 4 / triad_s
    threads = torch.get_num_threads() if device == "cpu" else None
    return Bandwidth(
        bytes_per_s=max(copy_bw, triad_bw),
        copy_bytes_per_s=copy_bw,
        triad_bytes_per_s=triad_bw,
        array_bytes=n * 4,
        repetitions=repetitions,
        device=device,
        method=f"STREAM copy and triad in torch {torch.__version__} on {device}"
        + (f" ({threads} threads)" if threads else "")
        + f", float32 arrays of {n * 4 / 2**20:.0f} MiB, best of {repetitions} after a warm-up",
        llc_bytes=llc,
        measured_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    )


def cached_bandwidth(cache_dir: Path, fingerprint: str, device: str = "cpu") -> Bandwidth:
    """The bandwidth of this fingerprint from ``cache_dir/bandwidth``, measured (and stored atomically) once."""
    path = cache_dir / "bandwidth" / f"{fingerprint}-{device.replace(':', '')}.json"
    try:
        data = json.loads(path.read_text())
        if data.pop("version", None) == CACHE_VERSION:
            return Bandwidth(**{**data, "cached": True})
    except (OSError, ValueError, TypeError):
        pass
    result = measure(device)
    atomic.write_json(path, {"version": CACHE_VERSION, **result.to_dict()})
    return result
