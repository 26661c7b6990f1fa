"""A stand-in for ``pynvml`` with the GPUs named in ``SLM_FAKE_GPUS`` (comma-separated names).

Put this directory first on ``PYTHONPATH`` of a subprocess (pytester, pytest-xdist workers) to
give it fake GPUs; GPU *i* has UUID ``GPU-fake-000i`` and compute capability 9.0.
"""

from __future__ import annotations

import os


class NVMLError(Exception):
    pass


def _names() -> list[str]:
    return [n.strip() for n in os.environ.get("SLM_FAKE_GPUS", "").split(",") if n.strip()]


def nvmlInit() -> None:
    if not _names():
        raise NVMLError("NVML Shared Library Not Found (no SLM_FAKE_GPUS)")


def nvmlShutdown() -> None:
    pass


def nvmlDeviceGetCount() -> int:
    return len(_names())


def nvmlDeviceGetHandleByIndex(i: int) -> int:
    return i


def nvmlDeviceGetHandleByUUID(uuid: str) -> int:
    return int(uuid.rsplit("-", 1)[1])


def nvmlDeviceGetUUID(h: int) -> str:
    return f"GPU-fake-{h:04d}"


def nvmlDeviceGetName(h: int) -> str:
    return _names()[h]


def nvmlDeviceGetCudaComputeCapability(h: int) -> tuple[int, int]:
    return (9, 0)


class _Memory:
    total = 80 * 1024**3


def nvmlDeviceGetMemoryInfo(h: int) -> _Memory:
    return _Memory()


def nvmlSystemGetDriverVersion() -> str:
    return "fake"
