"""The parallel layout of one engine: tensor × pipeline parallel size and vLLM's executor backend.

Pytest-free and import-light. The layout comes from a model's engine arguments (its entry in
``--slm-models-config``); a model without any runs on one device. :func:`gpus_needed` is what a
device assignment (one worker per GPU under ``-n``) must ask before handing a model its devices.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

#: vLLM's ``distributed_executor_backend`` values: multiprocessing on one node, Ray across nodes,
#: a single process, or a launcher (torchrun) that started the processes itself.
EXECUTOR_BACKENDS = ("mp", "ray", "uni", "external_launcher")


@dataclass(frozen=True)
class ParallelLayout:
    """How one engine is spread over devices."""

    tensor_parallel_size: int = 1
    pipeline_parallel_size: int = 1
    distributed_executor_backend: str | None = None  # None: vLLM's choice

    @classmethod
    def from_engine_args(cls, engine_args: Mapping[str, Any]) -> ParallelLayout:
        return cls(
            int(engine_args.get("tensor_parallel_size") or 1),
            int(engine_args.get("pipeline_parallel_size") or 1),
            engine_args.get("distributed_executor_backend"),
        )

    @property
    def devices(self) -> int:
        """Devices one engine occupies: tensor × pipeline parallel size."""
        return self.tensor_parallel_size * self.pipeline_parallel_size

    @property
    def label(self) -> str:
        """``tp2-pp1`` (with ``-ray`` etc. when a backend was asked for): short, id- and path-safe."""
        text = f"tp{self.tensor_parallel_size}-pp{self.pipeline_parallel_size}"
        if self.distributed_executor_backend:
            text += f"-{self.distributed_executor_backend.replace('_', '-')}"
        return text

    def to_dict(self) -> dict[str, Any]:
        """For engine facts in the report."""
        return {
            "tensor_parallel_size": self.tensor_parallel_size,
            "pipeline_parallel_size": self.pipeline_parallel_size,
            "distributed_executor_backend": self.distributed_executor_backend,
            "devices": self.devices,
            "label": self.label,
        }

    @property
    def fingerprint_suffix(self) -> str:
        """What the baseline fingerprint gains for this layout (see :func:`fingerprint_suffix`)."""
        return fingerprint_suffix(self.label)


def fingerprint_suffix(label: str | None) -> str:
    """For a layout label (records carry it as ``parallel``): nothing on one device, so existing
    single-device fingerprints stay as they are; ``__tp2-pp1`` (``__tp2-pp2-ray``, ...) otherwise."""
    if not label or label.startswith("tp1-pp1"):
        return ""
    return f"__{label}"


def gpus_needed(engine_args: Mapping[str, Any]) -> int:
    """How many GPUs one engine of a model needs: tensor × pipeline parallel size, 1 by default.

    A device assignment that gives each xdist worker its GPUs must give a model's engine this many
    devices of one worker (``CUDA_VISIBLE_DEVICES`` listing all of them). With the ``ray`` backend
    across nodes, Ray places the workers; the count is still tensor × pipeline parallel size.
    """
    return ParallelLayout.from_engine_args(engine_args).devices


def gpus_per_process(engine_args: Iterable[Mapping[str, Any]]) -> int:
    """GPUs each process of a session needs: the most any of its engines needs (1 with none)."""
    return max((gpus_needed(a) for a in engine_args), default=1)
