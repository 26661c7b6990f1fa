"""Which accelerator this process measures on. Pytest-free.

The choice is made once per process (once per pytest-xdist worker), before vLLM or torch touch
CUDA, and is then read by everything that needs a device: the engine, the power meter and
precision gating. It is applied by pointing ``CUDA_VISIBLE_DEVICES`` at the chosen GPU's UUID, so
the engine's device 0 *is* that GPU, the meter finds the same GPU by UUID, and no later code
rewrites the variable again.

- Single process: ``--slm-gpu-index I`` picks the I-th GPU visible to the session (default 0).
- ``pytest -n N``: worker ``gwI`` takes the I-th visible GPU; ``N`` larger than the number of GPUs
  is an error, and so is ``--slm-gpu-index`` together with ``-n``.
- A model whose engine spans several GPUs (tensor × pipeline parallel size k, from its config entry;
  :func:`pytest_slm.parallel.gpus_needed`) makes every process of the session take k GPUs: GPUs
  I..I+k-1 in a single process, GPUs kI..kI+k-1 for worker ``gwI``. The first is the one the meter
  and gating read; vLLM sees all k.
- No GPU (NVML absent or no device): the CPU; nothing is rewritten.

Integer entries of ``CUDA_VISIBLE_DEVICES`` are read as PCI-bus-ordered indices (NVML's order;
``CUDA_DEVICE_ORDER=PCI_BUS_ID`` is set when unset so CUDA agrees); UUIDs and UUID prefixes are
matched as CUDA matches them.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any


class DeviceError(ValueError):
    """A device selection that cannot be honoured; the message says what was asked and what exists."""


@dataclass(frozen=True)
class Gpu:
    """One GPU as NVML describes it."""

    nvml_index: int
    uuid: str
    name: str
    capability: tuple[int, int] | None = None
    memory_bytes: int | None = None


@dataclass(frozen=True)
class DeviceChoice:
    """The device of this process, and why it was chosen."""

    kind: str  # "cuda" or "cpu"
    reason: str
    gpu: Gpu | None = None
    #: index among the GPUs the session saw (before this process narrowed CUDA_VISIBLE_DEVICES)
    visible_index: int | None = None
    #: every GPU the session saw, in CUDA order (for the report)
    visible: tuple[Gpu, ...] = field(default_factory=tuple)
    #: further GPUs of this process, for an engine on several devices (tensor x pipeline parallel)
    extra: tuple[Gpu, ...] = field(default_factory=tuple)

    @property
    def gpus(self) -> tuple[Gpu, ...]:
        """Every GPU of this process, the primary one first."""
        return (self.gpu, *self.extra) if self.gpu is not None else ()

    @property
    def on_cuda(self) -> bool:
        return self.kind == "cuda"

    def describe(self) -> dict[str, Any]:
        """The choice as plain data for results.json."""
        out: dict[str, Any] = {"kind": self.kind, "reason": self.reason}
        if self.gpu is not None:
            out.update(
                gpu_name=self.gpu.name,
                gpu_uuid=self.gpu.uuid,
                nvml_index=self.gpu.nvml_index,
                visible_index=self.visible_index,
                compute_capability=".".join(map(str, self.gpu.capability)) if self.gpu.capability else None,
                memory_bytes=self.gpu.memory_bytes,
            )
        if self.extra:
            out.update(gpu_count=len(self.gpus), gpu_uuids=[g.uuid for g in self.gpus])
        return out


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def nvml_gpus(nvml: Any = None) -> list[Gpu]:
    """Every GPU NVML sees, in NVML (PCI bus) order; ``[]`` where NVML cannot be loaded."""
    if nvml is None:
        try:
            import pynvml
        except ImportError:
            return []
        nvml = pynvml
    try:
        nvml.nvmlInit()
    except Exception:  # NVMLError_LibraryNotFound, DriverNotLoaded: no NVIDIA GPU here
        return []
    try:
        out = []
        for i in range(int(nvml.nvmlDeviceGetCount())):
            h = nvml.nvmlDeviceGetHandleByIndex(i)
            cap: tuple[int, int] | None = None
            mem: int | None = None
            with contextlib.suppress(Exception):
                major, minor = nvml.nvmlDeviceGetCudaComputeCapability(h)
                cap = (int(major), int(minor))
            with contextlib.suppress(Exception):
                mem = int(nvml.nvmlDeviceGetMemoryInfo(h).total)
            out.append(Gpu(i, _text(nvml.nvmlDeviceGetUUID(h)), _text(nvml.nvmlDeviceGetName(h)), cap, mem))
        return out
    finally:
        with contextlib.suppress(Exception):
            nvml.nvmlShutdown()


def visible_gpus(all_gpus: Sequence[Gpu], cuda_visible_devices: str | None) -> list[Gpu]:
    """The GPUs CUDA will show, in CUDA order, given ``CUDA_VISIBLE_DEVICES``.

    As in CUDA, the list stops at the first entry that matches no GPU; an empty variable hides
    every GPU. MIG instances are refused (a MIG slice has no power counter of its own and is
    not what a latency baseline of a whole GPU means)."""
    if cuda_visible_devices is None:
        return list(all_gpus)
    out: list[Gpu] = []
    for raw in cuda_visible_devices.split(","):
        entry = raw.strip()
        if not entry:
            break
        if entry.startswith("MIG-"):
            raise DeviceError(f"CUDA_VISIBLE_DEVICES entry {entry!r} is a MIG instance; pytest-slm measures whole GPUs")
        if entry.lstrip("-").isdigit():
            idx = int(entry)
            match = [g for g in all_gpus if g.nvml_index == idx]
        else:
            prefix = entry if entry.startswith("GPU-") else f"GPU-{entry}"
            match = [g for g in all_gpus if g.uuid.startswith(prefix)]
        if len(match) != 1:
            break
        out.append(match[0])
    return out


def worker_position(workerinput: dict[str, Any] | None) -> tuple[int, int] | None:
    """(index, count) of this pytest-xdist worker, or None outside xdist."""
    if not workerinput:
        return None
    wid = str(workerinput.get("workerid", "gw0"))
    count = int(workerinput.get("workercount", 1))
    return int(wid.removeprefix("gw")), count


def choose(
    visible: Sequence[Gpu],
    *,
    gpu_index: int,
    gpu_index_source: str | None,
    worker: tuple[int, int] | None,
    cuda_visible_devices: str | None = None,
    per_process: int = 1,
) -> DeviceChoice:
    """The device this process uses. ``gpu_index_source`` is where an explicit ``--slm-gpu-index``
    came from (None when defaulted); ``worker`` is (index, count) under pytest-xdist; ``per_process``
    is how many GPUs each process takes (the largest engine's tensor x pipeline parallel size)."""
    k = max(1, per_process)
    why_k = f" ({k} per process: a model's engine spans {k} GPUs)" if k > 1 else ""
    shown = f"CUDA_VISIBLE_DEVICES={cuda_visible_devices!r}" if cuda_visible_devices is not None else "NVML"
    if not visible:
        if gpu_index_source is not None and gpu_index > 0:
            raise DeviceError(f"{gpu_index_source} asks for GPU {gpu_index}, but {shown} shows no GPU")
        return DeviceChoice("cpu", "no GPU visible (NVML absent or no device): the CPU")
    if worker is not None and worker[1] > 1:
        index, count = worker
        if gpu_index_source is not None:
            raise DeviceError(
                f"{gpu_index_source} picks one GPU for a single process; under pytest-xdist each worker takes "
                f"its own GPU (worker gwI uses GPU I): drop it, or narrow CUDA_VISIBLE_DEVICES instead"
            )
        if count * k > len(visible):
            raise DeviceError(too_many_workers(count, len(visible), shown, k))
        first = index * k
        where = f"GPU {first}" if k == 1 else f"GPUs {first}-{first + k - 1}"
        return DeviceChoice(
            "cuda",
            f"pytest-xdist worker gw{index} of {count} -> {where}{why_k}",
            visible[first],
            first,
            tuple(visible),
            tuple(visible[first + 1 : first + k]),
        )
    if gpu_index + k > len(visible):
        wanted = f"{gpu_index}" if k == 1 else f"{gpu_index} and the {k - 1} after it{why_k}"
        raise DeviceError(
            f"{gpu_index_source or '--slm-gpu-index'} {wanted} is out of range: {shown} shows {len(visible)} GPU(s)"
        )
    why = (f"{gpu_index_source} {gpu_index}" if gpu_index_source else "default GPU 0") + why_k
    return DeviceChoice(
        "cuda", why, visible[gpu_index], gpu_index, tuple(visible), tuple(visible[gpu_index + 1 : gpu_index + k])
    )


def too_many_workers(workers: int, gpus: int, shown: str, per_process: int = 1) -> str:
    if per_process > 1:
        return (
            f"-n {workers} starts {workers} pytest-xdist workers of {per_process} GPUs each (a model's engine spans "
            f"{per_process}), but {shown} shows {gpus} GPU(s): use -n {gpus // per_process} (or -n auto)"
        )
    return (
        f"-n {workers} starts {workers} pytest-xdist workers, but {shown} shows {gpus} GPU(s); pytest-slm runs "
        f"one worker per GPU: use -n {gpus} (or -n auto)"
    )


def apply(choice: DeviceChoice, environ: MutableMapping[str, str] = os.environ) -> None:
    """Narrow this process to the chosen GPU(s) (by UUID, so no ordering can get in the way)."""
    if choice.gpu is None:
        return
    environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
    environ["CUDA_VISIBLE_DEVICES"] = ",".join(g.uuid for g in choice.gpus)
