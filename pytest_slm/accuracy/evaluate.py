"""Run one lm-eval task on an engine and turn lm-eval's results into metrics."""

from __future__ import annotations

import hashlib
import math
import os
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
    apply_chat_template: bool = False,
    fewshot_as_multiturn: bool = False,
) -> TaskResult:
    """Run ``task`` through ``lm_eval.simple_evaluate`` on ``lm`` and collect its metrics.

    Every metric carries lm-eval's stderr and ``higher_is_better``; ``samples`` hold the
    per-item scores in doc order (the paired test of the regression gate needs them).
    ``apply_chat_template`` and ``fewshot_as_multiturn`` are lm-eval's own switches, passed as
    given (``simple_evaluate``'s default for ``fewshot_as_multiturn`` is True, its CLI's is False
    without the chat template: always passing it keeps this the CLI's figure) and recorded in
    every metric's workload.
    """
    if task not in manager.all_tasks:
        close = sorted(n for n in manager.all_tasks if task.split("_")[0] in n)[:8]
        raise UnknownTask(f"unknown lm-eval task {task!r}" + (f"; similar: {', '.join(close)}" if close else ""))
    out = _simple_evaluate(
        lm,
        task,
        manager=manager,
        num_fewshot=num_fewshot,
        limit=limit,
        bootstrap_iters=bootstrap_iters,
        apply_chat_template=apply_chat_template,
        fewshot_as_multiturn=fewshot_as_multiturn,
    )
    # what a figure was measured on, beyond the subtask's own facts (its workload identity)
    switches = {"apply_chat_template": apply_chat_template, "fewshot_as_multiturn": fewshot_as_multiturn}
    metrics: list[Metric] = []
    n_items = 0
    for sub, values in out["results"].items():
        n = out.get("n-samples", {}).get(sub, {}).get("effective")
        n_items = max(n_items, int(n or 0))
        metrics += _subtask_metrics(out, sub, values, n, num_fewshot, limit, {**switches, **dict(workload or {})})
    return TaskResult(task, metrics, num_fewshot, limit, n_items, raw=out)


def _simple_evaluate(lm: Any, task: str, **kwargs: Any) -> dict[str, Any]:
    """``lm_eval.simple_evaluate`` on one task with its samples logged; a dataset that cannot be
    loaded here is :class:`TaskUnavailable`."""
    from lm_eval import simple_evaluate

    try:
        out = simple_evaluate(model=lm, tasks=[task], task_manager=kwargs.pop("manager"), log_samples=True, **kwargs)
    except Exception as exc:  # lm-eval surfaces dataset loading problems from `datasets`/hub clients
        if _is_data_unavailable(exc):
            raise TaskUnavailable(
                f"task {task!r}: its dataset cannot be loaded here ({type(exc).__name__}: {str(exc)[:300]})"
            ) from exc
        raise
    if out is None:
        raise RuntimeError(f"lm-eval returned no results for {task!r}")
    results: dict[str, Any] = out
    return results


def _subtask_metrics(
    out: dict[str, Any],
    sub: str,
    values: dict[str, Any],
    n: Any,
    num_fewshot: int | None,
    limit: int | float | None,
    workload: dict[str, Any],
) -> list[Metric]:
    """Every metric of one (sub)task in lm-eval's results ``out``, with its stderr, direction and per-item samples."""
    hib = out.get("higher_is_better", {}).get(sub, {})
    samples = out.get("samples", {}).get(sub, [])
    fewshot = out.get("n-shot", {}).get(sub, num_fewshot)
    # which files a local (json) task read: the shipped GSM8K subset or a --slm-local-data copy
    data_files = (out.get("configs", {}).get(sub, {}).get("dataset_kwargs") or {}).get("data_files")
    data_ids = _data_identity(data_files)
    metrics = []
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
                    **({"data_files": data_files} if data_ids else {}),
                    "workload": {
                        "task": sub,
                        "task_version": _scalar(out.get("versions", {}).get(sub)),
                        "num_fewshot": fewshot,
                        "limit": limit,
                        **data_ids,
                        **workload,
                    },
                },
            )
        )
    return metrics


def _data_identity(data_files: Any) -> dict[str, str]:
    """For a task that read local files, each split named by file name and content hash
    (``{"data.test": "test_first100.jsonl@1a2b..."}``), for the workload identity: a baseline is
    compared only with runs on the same items and few-shot pool (the shipped GSM8K subset and a
    full copy are different workloads), wherever the files live."""
    if not isinstance(data_files, dict) or not all(isinstance(v, str) for v in data_files.values()):
        return {}
    ids = {}
    for split, path in sorted(data_files.items()):
        try:
            digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]
        except OSError:
            digest = "unreadable"
        ids[f"data.{split}"] = f"{Path(path).name}@{digest}"
    return ids


def _data_unavailable_types() -> tuple[type[BaseException], ...]:
    """The exception types that mean "this dataset cannot be loaded here", from the installed clients.

    - ``huggingface_hub``: ``OfflineModeIsEnabled`` (``HF_HUB_OFFLINE``), ``LocalEntryNotFoundError``
      (a hub file not in the local cache while the hub is unreachable), ``RepositoryNotFoundError``
      (and its ``GatedRepoError``: no such dataset, or no access to it);
    - ``datasets``: ``DatasetNotFoundError``, and the built-in ``ConnectionError`` it raises as
      "Couldn't reach '<id>' on the Hub" (offline mode, or no network);
    - ``httpx`` (the hub client's transport): ``ConnectError`` and ``TimeoutException``.
    """
    from datasets.exceptions import DatasetNotFoundError
    from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled, RepositoryNotFoundError

    known: list[type[BaseException]] = [
        ConnectionError,  # OfflineModeIsEnabled is one too
        OfflineModeIsEnabled,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        DatasetNotFoundError,
    ]
    try:
        import httpx

        known += [httpx.ConnectError, httpx.TimeoutException]
    except ImportError:  # pragma: no cover - huggingface_hub 1.x depends on httpx
        pass
    return tuple(known)


def _data_library_dirs() -> tuple[str, ...]:
    import datasets
    import huggingface_hub

    return tuple(str(Path(m.__file__).parent) + os.sep for m in (datasets, huggingface_hub) if m.__file__)


def _raised_through(exc: BaseException, dirs: tuple[str, ...]) -> bool:
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename.startswith(dirs):
            return True
        tb = tb.tb_next
    return False


def _is_data_unavailable(exc: BaseException) -> bool:
    """True only for a dataset-loading failure of ``datasets``/``huggingface_hub``: one of
    :func:`_data_unavailable_types`, raised while their code ran (its traceback passes through
    them), at the top of the exception or along its explicit ``raise ... from`` chain.

    Anything else (a ``FileNotFoundError`` from pytest-slm's own code, a bug whose message
    mentions "offline", an error raised while handling a hub error) is not: the test fails
    with its traceback.
    """
    known = _data_unavailable_types()
    dirs = _data_library_dirs()
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, known) and _raised_through(seen, dirs):
            return True
        seen = seen.__cause__
    return False
