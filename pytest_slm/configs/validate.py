"""The checks of a model config's fields: a YAML mapping in, a :class:`ModelEntry` out.

Pytest-free. Every error names the file, the entry and the field (:class:`At`), and unknown keys
are errors.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pytest_slm.checkpoints.params import ParameterCountError, parse_parameter_count
from pytest_slm.checkpoints.resolve import EMBEDDED
from pytest_slm.configs.schema import Accuracy, AccuracyTask, Calibration, ModelConfigError, ModelEntry
from pytest_slm.options import KV_CACHE_DTYPES
from pytest_slm.parallel import EXECUTOR_BACKENDS
from pytest_slm.precisions import Precision, UnknownPrecision, resolve_precisions

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_DTYPES = ("auto", "bfloat16", "float16", "half", "float32", "float")
_DTYPE_CANON = {"half": "float16", "float": "float32"}


class At:
    """Where a value sits, for error messages: file, entry, field."""

    def __init__(self, file: Path, entry: str | None = None, path: str = "") -> None:
        self.file, self.entry, self.path = file, entry, path

    def __truediv__(self, key: str | int) -> At:
        sub = f"{self.path}[{key}]" if isinstance(key, int) else (f"{self.path}.{key}" if self.path else key)
        return At(self.file, self.entry, sub)

    def error(self, message: str) -> ModelConfigError:
        where = str(self.file)
        if self.entry is not None:
            where += f": model {self.entry}"
        if self.path:
            where += f", field {self.path!r}"
        return ModelConfigError(f"{where}: {message}")


def mapping(value: Any, at: At, allowed: Sequence[str], required: Sequence[str] = ()) -> dict[str, Any]:
    """``value`` as a mapping whose keys are all ``allowed`` and hold every ``required`` one."""
    if not isinstance(value, dict):
        raise at.error(f"must be a mapping, got {type(value).__name__} {value!r}")
    unknown = [k for k in value if k not in allowed]
    if unknown:
        raise (at / str(unknown[0])).error(f"unknown key; valid keys here: {', '.join(allowed)}")
    for key in required:
        if value.get(key) in (None, ""):
            raise (at / key).error("is required")
    return value


def text(value: Any, at: At) -> str:
    """A non-empty string."""
    if not isinstance(value, str) or not value.strip():
        raise at.error(f"must be a non-empty string, got {value!r}")
    return value


def _int(value: Any, at: At, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise at.error(f"must be an integer, got {value!r}")
    if value < minimum:
        raise at.error(f"must be >= {minimum}, got {value}")
    return value


def _bool(value: Any, at: At) -> bool:
    if not isinstance(value, bool):
        raise at.error(f"must be true or false, got {value!r}")
    return value


def _fraction(value: Any, at: At) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise at.error(f"must be a number in (0, 1], got {value!r}")
    return float(value)


def _limit(value: Any, at: At) -> int | float:
    """An item count (>= 1) or a fraction of the task (< 1), as ``--slm-accuracy-limit`` takes it."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise at.error(f"must be a count >= 1 or a fraction in (0, 1), got {value!r}")
    return int(value) if value >= 1 and value == int(value) else float(value)


def _choice(choices: Sequence[str]) -> Callable[[Any, At], str]:
    def check(value: Any, at: At) -> str:
        if value not in choices:
            raise at.error(f"must be one of {', '.join(choices)}, got {value!r}")
        return str(value)

    return check


def _chat_template(value: Any, at: At) -> str:
    """A template file (relative to the config file) or the Jinja text itself."""
    given = text(value, at)
    if "{{" in given or "{%" in given:
        return given
    path = Path(os.path.expanduser(given))
    path = path if path.is_absolute() else at.file.parent / path
    if not path.is_file():
        raise at.error(f"no such chat template file {path} (give a file path or the Jinja template itself)")
    return str(path.resolve())


def _kv_dtypes(value: Any, at: At) -> list[str]:
    """One KV-cache dtype or a list: this model's values of the ``--slm-kv-cache-dtype`` axis."""
    values = value if isinstance(value, list) else [value]
    check = _choice(KV_CACHE_DTYPES)
    out = [check(v, at) for v in values]
    if not out:
        raise at.error(f"is empty; give one of {', '.join(KV_CACHE_DTYPES)} or leave it out")
    return list(dict.fromkeys(out))


#: engine argument -> its check. The values go to ``vllm.LLM(**kwargs)`` as they are.
ENGINE_ARGS: dict[str, Callable[[Any, At], Any]] = {
    "max_model_len": lambda v, at: _int(v, at, 16),
    "dtype": _choice(_DTYPES),
    "tensor_parallel_size": lambda v, at: _int(v, at, 1),
    "pipeline_parallel_size": lambda v, at: _int(v, at, 1),
    "distributed_executor_backend": _choice(EXECUTOR_BACKENDS),
    "trust_remote_code": _bool,
    "chat_template": _chat_template,
    "kv_cache_dtype": lambda v, at: _kv_dtypes(v, at),  # this model's KV-cache dtype axis
    "gpu_memory_utilization": _fraction,
    "enforce_eager": _bool,
    "max_num_seqs": lambda v, at: _int(v, at, 1),
}
ENTRY_KEYS = (
    "name",
    "model",
    "revision",
    "display_name",
    "parameters",
    "precisions",
    "engine_args",
    "calibration",
    "accuracy",
)


def _model_source(value: Any, at: At) -> tuple[str, bool]:
    """``(model, is_local)``: an alias, a hub id ``org/name``, or a local directory made absolute."""
    given = text(value, at)
    if given.lower() in EMBEDDED:
        return given.lower(), False
    expanded = Path(os.path.expanduser(given))
    local = expanded if expanded.is_absolute() else at.file.parent / expanded
    if local.exists() or given.startswith((".", "/", "~")) or given.count("/") != 1:
        if not local.is_dir():
            raise at.error(
                f"no such checkpoint directory {local} (a local path is relative to the config file; "
                f"a Hugging Face id is org/name; aliases: {', '.join(EMBEDDED)})"
            )
        return str(local.resolve()), True
    return given, False


def _accuracy(value: Any, at: At) -> Accuracy:
    raw = mapping(value, at, ("tasks", "limit", "num_fewshot"))
    tasks: tuple[AccuracyTask, ...] | None = None
    if raw.get("tasks") is not None:
        spec = raw["tasks"]
        if isinstance(spec, list):
            tasks = tuple(AccuracyTask(text(t, at / "tasks" / i)) for i, t in enumerate(spec))
        elif isinstance(spec, dict):
            out = []
            for task, opts in spec.items():
                t_at = at / "tasks" / str(task)
                opts = mapping(opts if opts is not None else {}, t_at, ("limit",))
                out.append(
                    AccuracyTask(text(task, t_at), _limit(opts["limit"], t_at / "limit") if "limit" in opts else None)
                )
            tasks = tuple(out)
        else:
            raise (at / "tasks").error(f"must be a list of task names or a mapping task -> {{limit: N}}, got {spec!r}")
        if not tasks:
            raise (at / "tasks").error("is empty; leave it out to use --slm-accuracy-tasks")
    return Accuracy(
        tasks=tasks,
        limit=_limit(raw["limit"], at / "limit") if raw.get("limit") is not None else None,
        num_fewshot=_int(raw["num_fewshot"], at / "num_fewshot", 0) if raw.get("num_fewshot") is not None else None,
    )


def _calibration(value: Any, at: At) -> Calibration:
    raw = mapping(value, at, ("dataset", "split", "num_samples", "max_sequence_length"))
    dataset = raw.get("dataset")
    if dataset is not None:
        dataset = text(dataset, at / "dataset")
        local = Path(os.path.expanduser(dataset))
        local = local if local.is_absolute() else at.file.parent / local
        if local.exists() or dataset.startswith((".", "/", "~")):
            if not local.exists():
                raise (at / "dataset").error(f"no such calibration file or directory {local}")
            dataset = str(local.resolve())
    return Calibration(
        dataset=dataset,
        split=text(raw["split"], at / "split") if raw.get("split") is not None else None,
        num_samples=_int(raw["num_samples"], at / "num_samples", 1) if raw.get("num_samples") is not None else None,
        max_sequence_length=_int(raw["max_sequence_length"], at / "max_sequence_length", 16)
        if raw.get("max_sequence_length") is not None
        else None,
    )


def entry(raw: Any, file: Path, index: int, token_env: str) -> ModelEntry:
    """The ``index``-th entry of ``file``'s ``models`` list, checked field by field."""
    top = At(file, f"#{index + 1}", "")
    name_raw = raw.get("name") if isinstance(raw, dict) else None
    if isinstance(name_raw, str):
        top = At(file, repr(name_raw))
    raw = mapping(raw, top, ENTRY_KEYS, required=("name", "model"))
    name = text(raw["name"], top / "name")
    if not _NAME.match(name):
        raise (top / "name").error(
            f"{name!r} must be lower-case letters, digits, '.', '_' or '-' (it names tests and baseline folders)"
        )
    model, is_local = _model_source(raw["model"], top / "model")
    revision = None
    if raw.get("revision") is not None:
        revision = text(str(raw["revision"]), top / "revision")
        if is_local or model in EMBEDDED:
            raise (top / "revision").error(f"applies to Hugging Face ids only; {model!r} is not one")
    parameters = None
    if raw.get("parameters") is not None:
        try:
            parameters = parse_parameter_count(raw["parameters"])
        except ParameterCountError as exc:
            raise (top / "parameters").error(str(exc)) from None
    precisions = None
    if raw.get("precisions") is not None:
        listed = raw["precisions"]
        if not isinstance(listed, list) or not listed:
            raise (top / "precisions").error(f"must be a non-empty list such as [bf16, int4], got {listed!r}")
        try:
            precisions = resolve_precisions([str(p) for p in listed])
        except UnknownPrecision as exc:
            raise (top / "precisions").error(str(exc)) from None
    engine_args: dict[str, Any] = {}
    if raw.get("engine_args") is not None:
        args_at = top / "engine_args"
        for key, value in mapping(raw["engine_args"], args_at, tuple(ENGINE_ARGS)).items():
            engine_args[key] = ENGINE_ARGS[key](value, args_at / key)
        if "dtype" in engine_args:
            engine_args["dtype"] = _DTYPE_CANON.get(engine_args["dtype"], engine_args["dtype"])
    checked = ModelEntry(
        name=name,
        model=model,
        file=file,
        revision=revision,
        display_name=text(raw["display_name"], top / "display_name") if raw.get("display_name") else None,
        parameters=parameters,
        precisions=precisions,
        engine_args=engine_args,
        calibration=_calibration(raw["calibration"], top / "calibration") if raw.get("calibration") else Calibration(),
        accuracy=_accuracy(raw["accuracy"], top / "accuracy") if raw.get("accuracy") else Accuracy(),
        token_env=token_env,
    )
    for p in precisions or ():
        dtype_conflict(checked, p)
    return checked


def dtype_conflict(entry: ModelEntry, precision: Precision) -> None:
    """A config ``dtype`` may pick the dtype of ``auto`` and quantized precisions; it may not turn
    a bf16 cell into float16 (the cell would be mislabelled)."""
    dtype = entry.engine_args.get("dtype")
    if dtype not in (None, "auto") and precision.dtype != "auto" and dtype != precision.dtype:
        raise At(entry.file, repr(entry.name), "engine_args.dtype").error(
            f"{dtype} contradicts precision {precision.name} ({precision.dtype}); "
            f"drop it or list precisions whose dtype it may set (auto, quantized ones)"
        )
