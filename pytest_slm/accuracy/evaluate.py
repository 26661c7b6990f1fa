"""Run one lm-eval task on an engine and turn lm-eval's results into metrics."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_slm.record import Metric

#: units for lm-eval metric names; anything else is a dimensionless score
UNITS = {"bits_per_byte": "bit/byte"}


class TaskUnavailable(Exception):
    """A task whose dataset cannot be loaded here (hub unreachable, not cached); the test skips."""


class UnknownTask(ValueError):
    """A name that is neither an lm-eval task/group nor a local task."""


@dataclass
class TaskResult:
    task: str
    metrics: list[Metric]
    num_fewshot: int | None
    limit: int | float | None
    n_items: int
    raw: dict[str, Any] = field(repr=False, default_factory=dict)


def metric_name(task: str, metric: str, filt: str) -> str:
    base = f"{task}.{metric}" if filt in ("none", "") else f"{task}.{metric}.{filt}"
    return re.sub(r"[^A-Za-z0-9_.]+", "_", base)


def task_manager(include_paths: list[Path]) -> Any:
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=[str(p) for p in include_paths])


def _scalar(value: Any) -> Any:
    return value if value is None or isinstance(value, (bool, int, float, str)) else str(value)


def evaluate(
    lm: Any,
    task: str,
    *,
    manager: Any,
    num_fewshot: int | None,
    limit: int | float | None,
    bootstrap_iters: int = 1000,
    workload: dict[str, Any] | None = None,
    chat_template: bool = False,
) -> TaskResult:
    """Run ``task`` through ``lm_eval.simple_evaluate`` on ``lm`` and collect its metrics.

    Every metric carries lm-eval's stderr and ``higher_is_better``; ``samples`` hold the
    per-item scores in doc order (the paired test of the regression gate needs them).
    """
    from lm_eval import simple_evaluate

    if task == "gsm8k_local" and task not in manager.all_tasks:
        raise TaskUnavailable("task 'gsm8k_local' needs --slm-local-data DIR with gsm8k/{train,test}*.jsonl")
    if task not in manager.all_tasks:
        close = sorted(n for n in manager.all_tasks if task.split("_")[0] in n)[:8]
        raise UnknownTask(f"unknown lm-eval task {task!r}" + (f"; similar: {', '.join(close)}" if close else ""))
    try:
        out = simple_evaluate(
            model=lm,
            tasks=[task],
            num_fewshot=num_fewshot,
            limit=limit,
            task_manager=manager,
            log_samples=True,
            bootstrap_iters=bootstrap_iters,
            apply_chat_template=chat_template,
            fewshot_as_multiturn=chat_template,
        )
    except Exception as exc:  # lm-eval surfaces dataset loading problems from `datasets`/hub clients
        if _is_data_unavailable(exc):
            raise TaskUnavailable(
                f"task {task!r}: its dataset cannot be loaded here ({type(exc).__name__}: {str(exc)[:300]})"
            ) from exc
        raise
    if out is None:
        raise RuntimeError(f"lm-eval returned no results for {task!r}")
    metrics: list[Metric] = []
    n_items = 0
    for sub, values in out["results"].items():
        hib = out.get("higher_is_better", {}).get(sub, {})
        n = out.get("n-samples", {}).get(sub, {}).get("effective")
        n_items = max(n_items, int(n or 0))
        samples = out.get("samples", {}).get(sub, [])
        fewshot = out.get("n-shot", {}).get(sub, num_fewshot)
        for key, value in values.items():
            if "," not in key or "_stderr," in key or not isinstance(value, (int, float)):
                continue
            name, filt = key.split(",", 1)
            stderr = values.get(f"{name}_stderr,{filt}")
            ordered = [s for s in sorted(samples, key=lambda s: s["doc_id"]) if s.get("filter", filt) == filt]
            per_item = [float(s[name]) for s in ordered if isinstance(s.get(name), (int, float))]
            # corpus metrics (perplexity) keep (log-likelihood, words or bytes) per document
            per_doc = [
                [float(s[name][0]), float(s[name][1])]
                for s in ordered
                if isinstance(s.get(name), (list, tuple)) and len(s[name]) == 2
            ]
            metrics.append(
                Metric(
                    name=metric_name(sub, name, filt),
                    value=float(value),
                    unit=UNITS.get(name, "1"),
                    higher_is_better=bool(hib.get(name, True)),
                    n=n,
                    stderr=float(stderr) if isinstance(stderr, (int, float)) and math.isfinite(stderr) else None,
                    samples=tuple(per_item),
                    info={
                        "task": sub,
                        "metric": name,
                        "filter": filt,
                        "kind": "quality",
                        "num_fewshot": fewshot,
                        "limit": limit,
                        "lm_eval_version": out.get("lm_eval_version") or out.get("config", {}).get("lm_eval_version"),
                        **({"per_doc": per_doc} if per_doc else {}),
                        "workload": {
                            "task": sub,
                            "task_version": _scalar(out.get("versions", {}).get(sub)),
                            "num_fewshot": fewshot,
                            "limit": limit,
                            **dict(workload or {}),
                        },
                    },
                )
            )
    return TaskResult(task, metrics, num_fewshot, limit, n_items, raw=out)


def _is_data_unavailable(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        name = type(seen).__name__
        text = str(seen)
        if (
            name
            in (
                "ConnectionError",
                "DatasetNotFoundError",
                "LocalEntryNotFoundError",
                "OfflineModeIsEnabled",
                "HfHubHTTPError",
                "FileNotFoundError",
            )
            or "offline" in text.lower()
            or "couldn't reach" in text.lower()
        ):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
