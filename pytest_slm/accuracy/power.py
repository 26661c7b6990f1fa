"""What an accuracy task of n items can tell the gate: the smallest drop it can call. Pytest-free.

The gate compares an accuracy figure with its baseline item by item (exact McNemar test on the
discordant items, one-sided, at the per-comparison level ``alpha``). The most a drop can say is when
every discordant item went one way: ``k`` items lost and none gained has ``p = 0.5**k``, so no drop of
fewer than ``ceil(log2(1 / alpha))`` items can ever be called a regression, whatever the model. Items
that flip both ways (a quantized model, another kernel) only raise that count. This is the floor of
what a task size can detect; the terminal states it for the run's tasks so a user picks a size that
can see the change they care about.
"""

from __future__ import annotations

import math
from pathlib import Path

from pytest_slm.accuracy.tasks import DATA, GSM8K_SHIPPED

#: items of the tasks pytest-slm ships (before any limit)
SHIPPED_ITEMS = {
    "slm_mc": DATA / "slm_mc.jsonl",
    "gsm8k_local": GSM8K_SHIPPED / "test_first100.jsonl",
}


def smallest_called_loss(alpha: float) -> int:
    """The fewest items lost, none gained, that an exact one-sided McNemar test at ``alpha`` calls a
    regression: the least ``k`` with ``0.5**k <= alpha``."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    k = math.ceil(-math.log2(alpha))
    return k if 0.5**k <= alpha else k + 1


def items_of(task: str, limit: int | float | None, local_data: Path | None = None) -> int | None:
    """How many items ``task`` scores under ``limit`` (lm-eval's: a count, or a fraction below 1), for the
    tasks whose size is known before they load (the shipped ones); None for any other."""
    if local_data is not None and task == "gsm8k_local" and (local_data / "gsm8k").is_dir():
        return None  # the user's own copy: its size is known once lm-eval loads it
    path = SHIPPED_ITEMS.get(task)
    if path is None:
        return None
    with path.open(encoding="utf-8") as f:
        n = sum(1 for line in f if line.strip())
    if limit is None:
        return n
    return min(n, int(limit * n) if limit < 1 else int(limit))


def detectability(task: str, n_items: int | None, alpha: float) -> str:
    """One line: the smallest drop the gate can call on ``task`` at ``alpha``, in items and points."""
    k = smallest_called_loss(alpha)
    if n_items is None:
        return (
            f"{task}: a drop is called a regression from {k} items lost and none gained (per-figure level "
            f"{alpha:.2g}); its item count is known once it loads"
        )
    if k > n_items:
        return f"{task}: {n_items} items can never show a regression at the per-figure level {alpha:.2g} ({k} needed)"
    return (
        f"{task}: {n_items} items: the smallest drop the gate can call is {k} items lost and none gained "
        f"({100 * k / n_items:.1f} points; per-figure level {alpha:.2g}); items gained beside them raise it"
    )
