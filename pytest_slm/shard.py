"""``--slm-shard I/N``: split the model × precision matrix over N runners, deterministically.

Pytest-free. The unit is a model (all its precisions in one shard: a quantized cell's retention
needs the bf16 cell of the same model in the same process). Each model costs parameters ×
precisions; models go, largest first, to the least loaded shard (longest processing time first),
ties broken by model name and then by the lowest shard index, so every runner computes the same
split from the same command line. Parameter counts come from the model's config entry, else
from the local checkpoint's safetensors headers, else from the size its name states (135M, 1.5B),
else 1. Hub checkpoints are never read for this: runners with and without a warm download cache
must agree.
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_SHARD = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


def parse_shard(text: str) -> tuple[int, int]:
    """``"2/4"`` -> ``(2, 4)``; anything else, or an index outside 1..N, is a ValueError naming it."""
    m = _SHARD.match(text)
    if not m:
        raise ValueError(f"shard must be I/N, e.g. 2/4, got {text!r}")
    index, count = int(m.group(1)), int(m.group(2))
    if count < 1 or not 1 <= index <= count:
        raise ValueError(f"shard {text!r} is out of range: need 1 <= I <= N with N >= 1")
    return index, count


@dataclass(frozen=True)
class ModelCost:
    """One model's share of the work: parameters × precisions, and where the count came from."""

    name: str
    parameters: int | None
    parameters_from: str  # "config", "checkpoint", "name", or "unknown"
    precisions: int

    @property
    def cost(self) -> int:
        return (self.parameters or 1) * self.precisions


def estimate_parameters(model: str, entry: Any = None) -> tuple[int | None, str]:
    """A model's parameter count for balancing, and its source (see the module docstring)."""
    from pytest_slm.checkpoints.params import checkpoint_parameters, parameters_from_name

    if entry is not None and getattr(entry, "parameters", None):
        return int(entry.parameters), "config"
    local = Path(os.path.expanduser(model))
    if local.is_dir():
        found = checkpoint_parameters(local)
        if found is not None:
            return found[0], "checkpoint"
        weights = sum(p.stat().st_size for p in local.iterdir() if p.suffix in (".safetensors", ".bin"))
        if weights:
            return max(1, weights // 2), "checkpoint"  # bytes at 16 bits per parameter
    named = parameters_from_name(model if not local.is_dir() else local.name)
    if named:
        return named, "name"
    return None, "unknown"


def model_costs(specs: Iterable[Any]) -> list[ModelCost]:
    """Group the matrix's cells (``EngineSpec``) by model, in first-seen order, with their cost."""
    counts: dict[str, int] = {}
    first: dict[str, Any] = {}
    for spec in specs:
        counts[spec.model_name] = counts.get(spec.model_name, 0) + 1
        first.setdefault(spec.model_name, spec)
    out = []
    for name, spec in first.items():
        parameters, source = estimate_parameters(spec.model, getattr(spec, "model_config", None))
        out.append(ModelCost(name, parameters, source, counts[name]))
    return out


def assign(costs: Iterable[ModelCost], count: int) -> list[list[ModelCost]]:
    """Longest processing time first: biggest model to the least loaded shard; deterministic ties."""
    shards: list[list[ModelCost]] = [[] for _ in range(count)]
    loads = [0] * count
    for model in sorted(costs, key=lambda m: (-m.cost, m.name)):
        target = min(range(count), key=lambda i: (loads[i], i))
        shards[target].append(model)
        loads[target] += model.cost
    return shards


@dataclass(frozen=True)
class ShardPlan:
    """This runner's shard and the whole split (for the report)."""

    index: int  # 1-based
    count: int
    shards: tuple[tuple[ModelCost, ...], ...]

    @classmethod
    def build(cls, index: int, count: int, specs: Iterable[Any]) -> ShardPlan:
        costs = model_costs(specs)
        if len(costs) < count:
            raise ValueError(
                f"--slm-shard {index}/{count}: the matrix has {len(costs)} model(s) and a model is never split, "
                f"so at most {len(costs)} shard(s) can hold work"
            )
        return cls(index, count, tuple(tuple(s) for s in assign(costs, count)))

    @property
    def models(self) -> frozenset[str]:
        """Names of the models this runner runs."""
        return frozenset(m.name for m in self.shards[self.index - 1])

    @property
    def runs_unbound(self) -> bool:
        """Tests that use no model (no ``slm_engine``) run in shard 1 only, so shards add up to one run."""
        return self.index == 1

    def other_cells(self, specs: Iterable[Any]) -> list[tuple[str, str, str | None]]:
        """The (model, precision, layout) cells of the matrix (``EngineSpec``) the other shards run."""
        return [(s.model_name, s.precision.name, s.layout.label) for s in specs if s.model_name not in self.models]

    def loads(self) -> list[int]:
        return [sum(m.cost for m in s) for s in self.shards]

    def summary(self) -> dict[str, Any]:
        """For ``environment.shard`` in results.json."""
        return {
            "index": self.index,
            "count": self.count,
            "models": [m.name for m in self.shards[self.index - 1]],
            "estimated_cost": self.loads()[self.index - 1],
            "cost_unit": "parameters x precisions",
            "all_shards": [
                {"shard": f"{i + 1}/{self.count}", "estimated_cost": load, "models": [m.name for m in s]}
                for i, (s, load) in enumerate(zip(self.shards, self.loads(), strict=True))
            ],
            "estimates": {
                m.name: {"parameters": m.parameters, "from": m.parameters_from, "precisions": m.precisions}
                for s in self.shards
                for m in s
            },
        }


def runs_here(
    plan: ShardPlan | None,
    model: str | None,
    tasks: Collection[str] = (),
    task: str | None = None,
    retention_task: str | None = None,
) -> bool:
    """Whether a test runs on this runner: its ``model`` is in this shard (a test without a model runs
    in shard 1 only), and its accuracy ``task`` (or ``retention_task``: those or ``slm_ppl``) is among
    the ``tasks`` the model's config runs."""
    if model is None:
        return plan is None or plan.runs_unbound
    other_task = (task is not None and task not in tasks) or (
        retention_task is not None and retention_task not in (*tasks, "slm_ppl")
    )
    other_shard = plan is not None and model not in plan.models
    return not (other_shard or other_task)
