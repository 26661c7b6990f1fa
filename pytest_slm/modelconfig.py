"""Model configs (``--slm-models-config FILE.yaml`` or a directory of them): one entry per model.

Pytest-free. A config file is YAML::

    token_env: HF_TOKEN              # optional: the variable holding a Hugging Face token (gated models)
    models:
      - name: qwen2.5-0.5b           # required: the model's name in test ids, reports and baselines
        model: Qwen/Qwen2.5-0.5B-Instruct   # required: hub id, local path (relative to this file), or alias
        revision: main               # hub ids only
        display_name: Qwen2.5 0.5B Instruct
        parameters: 494M             # checked against the checkpoint (see PARAMETER_TOLERANCE)
        precisions: [bf16, int4]     # this model's precisions (default: --precision)
        engine_args: {max_model_len: 4096, tensor_parallel_size: 1}  # passed to vllm.LLM
        calibration: {dataset: ..., split: ..., num_samples: 256, max_sequence_length: 1024}
        accuracy: {tasks: {gsm8k: {limit: 200}, mmlu: {}}, limit: 100, num_fewshot: 5}

The schema is checked on load; every error names the file, the entry and the field, and unknown
keys are errors. Precedence for a model's settings: command line > environment > its config
entry > ini > default; ``--precision`` and ``--slm-accuracy-tasks`` given on the command line or in
the environment narrow a model's own lists instead of replacing them.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_slm.checkpoints.params import (
    ParameterCountError,
    checkpoint_parameters,
    format_parameter_count,
    parse_parameter_count,
)
from pytest_slm.checkpoints.resolve import EMBEDDED
from pytest_slm.options import KV_CACHE_DTYPES
from pytest_slm.parallel import EXECUTOR_BACKENDS, ParallelLayout
from pytest_slm.precisions import Precision, UnknownPrecision, resolve_precisions
from pytest_slm.settings import Settings

#: A config's parameter count may differ from the checkpoint's by this fraction. Stated counts are
#: rounded (Qwen2.5-0.5B holds 494M, SmolLM2-360M 362M, Phi-3.5-mini 3.82B) and safetensors count
#: what is stored (tied embeddings once); 15 % absorbs that, while a wrong checkpoint is caught: the
#: next size within any family is at least twice as large (135M/360M/1.7B, 0.5B/1.5B/3B, 1B/3B/8B).
PARAMETER_TOLERANCE = 0.15
DEFAULT_TOKEN_ENV = "HF_TOKEN"
CONFIG_SUFFIXES = (".yaml", ".yml")
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DTYPES = ("auto", "bfloat16", "float16", "half", "float32", "float")
_DTYPE_CANON = {"half": "float16", "float": "float32"}


class ModelConfigError(ValueError):
    """A model config that cannot be used; the message names the file, the entry and the field."""


@dataclass(frozen=True)
class Calibration:
    """Calibration for this model's quantized precisions (unset: the session's settings)."""

    dataset: str | None = None
    split: str | None = None
    num_samples: int | None = None
    max_sequence_length: int | None = None


@dataclass(frozen=True)
class AccuracyTask:
    """One lm-eval task for this model, with its own item limit (None: the model's limit)."""

    name: str
    limit: int | float | None = None


@dataclass(frozen=True)
class Accuracy:
    """This model's accuracy tasks (None: the session's), default item limit and few-shot count."""

    tasks: tuple[AccuracyTask, ...] | None = None
    limit: int | float | None = None
    num_fewshot: int | None = None


@dataclass(frozen=True)
class ModelEntry:
    """One model of a config file, validated."""

    name: str
    model: str  # hub id, alias, or an absolute local path
    file: Path
    revision: str | None = None
    display_name: str | None = None
    parameters: int | None = None
    precisions: tuple[Precision, ...] | None = None
    engine_args: Mapping[str, Any] = field(default_factory=dict)
    calibration: Calibration = Calibration()
    accuracy: Accuracy = Accuracy()
    token_env: str = DEFAULT_TOKEN_ENV

    @property
    def where(self) -> str:
        return f"{self.file}: model {self.name!r}"

    @property
    def layout(self) -> ParallelLayout:
        return ParallelLayout.from_engine_args(self.engine_args)

    def facts(self) -> dict[str, Any]:
        """What the report shows about the entry (the token's variable name, never its value)."""
        return {
            "file": str(self.file),
            "name": self.name,
            "model": self.model,
            "revision": self.revision,
            "display_name": self.display_name,
            "parameters": self.parameters,
            "precisions": [p.name for p in self.precisions] if self.precisions is not None else None,
            "engine_args": dict(self.engine_args),
            "calibration": dataclasses.asdict(self.calibration),
            "accuracy": dataclasses.asdict(self.accuracy),
            "token_env": self.token_env,
        }


@dataclass(frozen=True)
class ModelsConfig:
    """Every entry of the config file(s), in file order."""

    files: tuple[Path, ...]
    entries: tuple[ModelEntry, ...]

    def get(self, name: str) -> ModelEntry | None:
        """The entry called ``name``, else the one whose ``model`` is exactly ``name``."""
        for e in self.entries:
            if e.name == name:
                return e
        return next((e for e in self.entries if e.model == name), None)


# -- loading ---------------------------------------------------------------------------------


class _At:
    """Where a value sits, for error messages: file, entry, field."""

    def __init__(self, file: Path, entry: str | None = None, path: str = "") -> None:
        self.file, self.entry, self.path = file, entry, path

    def __truediv__(self, key: str | int) -> _At:
        sub = f"{self.path}[{key}]" if isinstance(key, int) else (f"{self.path}.{key}" if self.path else key)
        return _At(self.file, self.entry, sub)

    def error(self, message: str) -> ModelConfigError:
        where = str(self.file)
        if self.entry is not None:
            where += f": model {self.entry}"
        if self.path:
            where += f", field {self.path!r}"
        return ModelConfigError(f"{where}: {message}")


def _mapping(value: Any, at: _At, allowed: Sequence[str], required: Sequence[str] = ()) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise at.error(f"must be a mapping, got {type(value).__name__} {value!r}")
    unknown = [k for k in value if k not in allowed]
    if unknown:
        raise (at / str(unknown[0])).error(f"unknown key; valid keys here: {', '.join(allowed)}")
    for key in required:
        if value.get(key) in (None, ""):
            raise (at / key).error("is required")
    return value


def _str(value: Any, at: _At) -> str:
    if not isinstance(value, str) or not value.strip():
        raise at.error(f"must be a non-empty string, got {value!r}")
    return value


def _int(value: Any, at: _At, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise at.error(f"must be an integer, got {value!r}")
    if value < minimum:
        raise at.error(f"must be >= {minimum}, got {value}")
    return value


def _bool(value: Any, at: _At) -> bool:
    if not isinstance(value, bool):
        raise at.error(f"must be true or false, got {value!r}")
    return value


def _fraction(value: Any, at: _At) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise at.error(f"must be a number in (0, 1], got {value!r}")
    return float(value)


def _limit(value: Any, at: _At) -> int | float:
    """An item count (>= 1) or a fraction of the task (< 1), as ``--slm-accuracy-limit`` takes it."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise at.error(f"must be a count >= 1 or a fraction in (0, 1), got {value!r}")
    return int(value) if value >= 1 and value == int(value) else float(value)


def _choice(choices: Sequence[str]) -> Callable[[Any, _At], str]:
    def check(value: Any, at: _At) -> str:
        if value not in choices:
            raise at.error(f"must be one of {', '.join(choices)}, got {value!r}")
        return str(value)

    return check


def _chat_template(value: Any, at: _At) -> str:
    """A template file (relative to the config file) or the Jinja text itself."""
    text = _str(value, at)
    if "{{" in text or "{%" in text:
        return text
    path = Path(os.path.expanduser(text))
    path = path if path.is_absolute() else at.file.parent / path
    if not path.is_file():
        raise at.error(f"no such chat template file {path} (give a file path or the Jinja template itself)")
    return str(path.resolve())


def _kv_dtypes(value: Any, at: _At) -> list[str]:
    """One KV-cache dtype or a list: this model's values of the ``--slm-kv-cache-dtype`` axis."""
    values = value if isinstance(value, list) else [value]
    check = _choice(KV_CACHE_DTYPES)
    out = [check(v, at) for v in values]
    if not out:
        raise at.error(f"is empty; give one of {', '.join(KV_CACHE_DTYPES)} or leave it out")
    return list(dict.fromkeys(out))


#: engine argument -> its check. The values go to ``vllm.LLM(**kwargs)`` as they are.
ENGINE_ARGS: dict[str, Callable[[Any, _At], Any]] = {
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


def _model_source(value: Any, at: _At) -> tuple[str, bool]:
    """``(model, is_local)``: an alias, a hub id ``org/name``, or a local directory made absolute."""
    text = _str(value, at)
    if text.lower() in EMBEDDED:
        return text.lower(), False
    expanded = Path(os.path.expanduser(text))
    local = expanded if expanded.is_absolute() else at.file.parent / expanded
    if local.exists() or text.startswith((".", "/", "~")) or text.count("/") != 1:
        if not local.is_dir():
            raise at.error(
                f"no such checkpoint directory {local} (a local path is relative to the config file; "
                f"a Hugging Face id is org/name; aliases: {', '.join(EMBEDDED)})"
            )
        return str(local.resolve()), True
    return text, False


def _accuracy(value: Any, at: _At) -> Accuracy:
    raw = _mapping(value, at, ("tasks", "limit", "num_fewshot"))
    tasks: tuple[AccuracyTask, ...] | None = None
    if raw.get("tasks") is not None:
        spec = raw["tasks"]
        if isinstance(spec, list):
            tasks = tuple(AccuracyTask(_str(t, at / "tasks" / i)) for i, t in enumerate(spec))
        elif isinstance(spec, dict):
            out = []
            for task, opts in spec.items():
                t_at = at / "tasks" / str(task)
                opts = _mapping(opts if opts is not None else {}, t_at, ("limit",))
                out.append(
                    AccuracyTask(_str(task, t_at), _limit(opts["limit"], t_at / "limit") if "limit" in opts else None)
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


def _calibration(value: Any, at: _At) -> Calibration:
    raw = _mapping(value, at, ("dataset", "split", "num_samples", "max_sequence_length"))
    dataset = raw.get("dataset")
    if dataset is not None:
        dataset = _str(dataset, at / "dataset")
        local = Path(os.path.expanduser(dataset))
        local = local if local.is_absolute() else at.file.parent / local
        if local.exists() or dataset.startswith((".", "/", "~")):
            if not local.exists():
                raise (at / "dataset").error(f"no such calibration file or directory {local}")
            dataset = str(local.resolve())
    return Calibration(
        dataset=dataset,
        split=_str(raw["split"], at / "split") if raw.get("split") is not None else None,
        num_samples=_int(raw["num_samples"], at / "num_samples", 1) if raw.get("num_samples") is not None else None,
        max_sequence_length=_int(raw["max_sequence_length"], at / "max_sequence_length", 16)
        if raw.get("max_sequence_length") is not None
        else None,
    )


def _entry(raw: Any, file: Path, index: int, token_env: str) -> ModelEntry:
    top = _At(file, f"#{index + 1}", "")
    name_raw = raw.get("name") if isinstance(raw, dict) else None
    if isinstance(name_raw, str):
        top = _At(file, repr(name_raw))
    raw = _mapping(raw, top, ENTRY_KEYS, required=("name", "model"))
    name = _str(raw["name"], top / "name")
    if not _NAME.match(name):
        raise (top / "name").error(
            f"{name!r} must be lower-case letters, digits, '.', '_' or '-' (it names tests and baseline folders)"
        )
    model, is_local = _model_source(raw["model"], top / "model")
    revision = None
    if raw.get("revision") is not None:
        revision = _str(str(raw["revision"]), top / "revision")
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
        for key, value in _mapping(raw["engine_args"], args_at, tuple(ENGINE_ARGS)).items():
            engine_args[key] = ENGINE_ARGS[key](value, args_at / key)
        if "dtype" in engine_args:
            engine_args["dtype"] = _DTYPE_CANON.get(engine_args["dtype"], engine_args["dtype"])
    entry = ModelEntry(
        name=name,
        model=model,
        file=file,
        revision=revision,
        display_name=_str(raw["display_name"], top / "display_name") if raw.get("display_name") else None,
        parameters=parameters,
        precisions=precisions,
        engine_args=engine_args,
        calibration=_calibration(raw["calibration"], top / "calibration") if raw.get("calibration") else Calibration(),
        accuracy=_accuracy(raw["accuracy"], top / "accuracy") if raw.get("accuracy") else Accuracy(),
        token_env=token_env,
    )
    for p in precisions or ():
        dtype_conflict(entry, p)
    return entry


def dtype_conflict(entry: ModelEntry, precision: Precision) -> None:
    """A config ``dtype`` may pick the dtype of ``auto`` and quantized precisions; it may not turn
    a bf16 cell into float16 (the cell would be mislabelled)."""
    dtype = entry.engine_args.get("dtype")
    if dtype not in (None, "auto") and precision.dtype != "auto" and dtype != precision.dtype:
        raise _At(entry.file, repr(entry.name), "engine_args.dtype").error(
            f"{dtype} contradicts precision {precision.name} ({precision.dtype}); "
            f"drop it or list precisions whose dtype it may set (auto, quantized ones)"
        )


def config_files(path: Path) -> list[Path]:
    """``path`` itself, or the ``*.yaml``/``*.yml`` files of a directory, sorted."""
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in CONFIG_SUFFIXES)
        if not files:
            raise ModelConfigError(f"{path}: no *.yaml model configs in this directory")
        return files
    if not path.is_file():
        raise ModelConfigError(f"{path}: no such model config file or directory")
    return [path]


def load_file(file: Path) -> list[ModelEntry]:
    """The entries of one config file, validated."""
    import yaml

    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ModelConfigError(f"{file}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ModelConfigError(f"{file}: not valid YAML: {exc}") from None
    top = _mapping(data, _At(file), ("models", "token_env"), required=("models",))
    token_env = DEFAULT_TOKEN_ENV
    if top.get("token_env") is not None:
        token_env = _str(top["token_env"], _At(file, None, "token_env"))
        if not _ENV_NAME.match(token_env):
            raise _At(file, None, "token_env").error(f"{token_env!r} is not an environment variable name")
    models = top["models"]
    if not isinstance(models, list) or not models:
        raise _At(file, None, "models").error("must be a non-empty list of model entries")
    return [_entry(raw, file, i, token_env) for i, raw in enumerate(models)]


def load(path: Path) -> ModelsConfig:
    """Load a config file or a directory of them; names must be unique across all of them."""
    files = config_files(path)
    entries: list[ModelEntry] = []
    for file in files:
        for entry in load_file(file):
            twin = next((e for e in entries if e.name == entry.name), None)
            if twin is not None:
                raise _At(entry.file, repr(entry.name), "name").error(f"the name is also used in {twin.file}")
            entries.append(entry)
    return ModelsConfig(tuple(files), tuple(entries))


# -- what an entry changes -------------------------------------------------------------------


def explicit(settings: Settings, name: str) -> bool:
    """True when ``name`` was set on the command line or in the environment (these beat a config)."""
    source = settings.sources.get(name, "")
    return source.startswith(("--", "environment variable"))


def select(settings: Settings, config: ModelsConfig | None) -> list[tuple[str, ModelEntry | None]]:
    """The session's models: ``--models`` entries (a config name or model picks its entry), or every
    config entry when ``--models`` was not given."""
    if config is None:
        return [(m, None) for m in settings.models]
    if "models" not in settings.sources:
        return [(e.model, e) for e in config.entries]
    out: list[tuple[str, ModelEntry | None]] = []
    for m in settings.models:
        entry = config.get(m)
        out.append((entry.model, entry) if entry else (m, None))
    return out


def precisions_for(settings: Settings, entry: ModelEntry | None) -> tuple[Precision, ...]:
    """The entry's precisions, narrowed by an explicit ``--precision``; else the session's."""
    if entry is None or entry.precisions is None:
        return settings.precisions
    if explicit(settings, "precisions"):
        return tuple(p for p in entry.precisions if p in settings.precisions)
    return entry.precisions


def engine_args_for(settings: Settings, entry: ModelEntry | None, precision: Precision) -> dict[str, Any]:
    """The entry's engine arguments for one cell; an explicit ``--slm-max-model-len`` or
    ``--slm-gpu-memory-utilization`` wins over the entry (the engine sets those from settings)."""
    if entry is None:
        return {}
    dtype_conflict(entry, precision)
    args = dict(entry.engine_args)
    for name in ("max_model_len", "gpu_memory_utilization"):
        if explicit(settings, name):
            args.pop(name, None)
    if precision.dtype != "auto":
        args.pop("dtype", None)  # equal to the precision's (dtype_conflict passed)
    args.pop("kv_cache_dtype", None)  # a matrix axis: it reaches the engine as EngineSpec.kv_cache_dtype
    return args


def kv_dtypes_for(settings: Settings, entry: ModelEntry | None) -> tuple[str, ...]:
    """The KV-cache dtypes this model runs: the entry's, unless ``--slm-kv-cache-dtype`` was given
    on the command line or in the environment (then the session's, as for every other value)."""
    if entry is None or "kv_cache_dtype" not in entry.engine_args or explicit(settings, "kv_cache_dtype"):
        return settings.kv_cache_dtype
    return tuple(entry.engine_args["kv_cache_dtype"])


def tasks_for(settings: Settings, entry: ModelEntry | None) -> tuple[str, ...]:
    """The accuracy tasks this model runs: the entry's (narrowed by explicit ``--slm-accuracy-tasks``)."""
    if entry is None or entry.accuracy.tasks is None:
        return settings.accuracy_tasks
    names = tuple(t.name for t in entry.accuracy.tasks)
    if explicit(settings, "accuracy_tasks"):
        return tuple(t for t in names if t in settings.accuracy_tasks)
    return names


def settings_for(settings: Settings, entry: ModelEntry | None) -> Settings:
    """Session settings with this model's calibration and accuracy settings applied."""
    if entry is None:
        return settings
    values: dict[str, Any] = {}
    cal = entry.calibration
    for field_name, value in (
        ("calibration_dataset", cal.dataset),
        ("calibration_split", cal.split),
        ("num_calibration_samples", cal.num_samples),
        ("max_sequence_length", cal.max_sequence_length),
        ("accuracy_limit", entry.accuracy.limit),
        ("num_fewshot", entry.accuracy.num_fewshot),
    ):
        if value is not None and not explicit(settings, field_name):
            values[field_name] = value
    values["accuracy_tasks"] = tasks_for(settings, entry)
    if not explicit(settings, "accuracy_limit"):
        values["accuracy_task_limits"] = {t.name: t.limit for t in entry.accuracy.tasks or () if t.limit is not None}
    sources = {**settings.sources, **dict.fromkeys(values, entry.where)}
    return dataclasses.replace(settings, **values, sources=sources)


def hub_token(entry: ModelEntry | None, environ: Mapping[str, str] = os.environ) -> str | None:
    """The Hugging Face token for gated models, from the entry's ``token_env`` (default HF_TOKEN)."""
    name = entry.token_env if entry is not None else DEFAULT_TOKEN_ENV
    return environ.get(name) or None


def check_parameters(entry: ModelEntry, checkpoint: Path) -> dict[str, Any]:
    """Compare the entry's parameter count with the checkpoint's; raise when they disagree.

    Returns facts for the report: the counted parameters, how they were counted, the verdict."""
    found = checkpoint_parameters(checkpoint)
    facts: dict[str, Any] = {"stated": entry.parameters, "counted": None, "counted_from": None}
    if found is None:
        facts["check"] = f"not checked: no safetensors header or config.json sizes to count in {checkpoint}"
        return facts
    counted, how = found
    facts.update(counted=counted, counted_from=how)
    if entry.parameters is None:
        facts["check"] = "no parameter count in the config"
        return facts
    ratio = entry.parameters / counted
    facts["ratio"] = ratio
    if abs(ratio - 1) > PARAMETER_TOLERANCE:
        raise _At(entry.file, repr(entry.name), "parameters").error(
            f"says {format_parameter_count(entry.parameters)} parameters but the checkpoint {checkpoint} has "
            f"{format_parameter_count(counted)} (counted from its {how}); a wrong model or a wrong count "
            f"(tolerance ±{PARAMETER_TOLERANCE:.0%})"
        )
    facts["check"] = f"within ±{PARAMETER_TOLERANCE:.0%}"
    return facts


def chat_template_text(engine_args: Mapping[str, Any]) -> str | None:
    """The Jinja text of an entry's ``chat_template`` (a file path made absolute on load, or the text)."""
    value = engine_args.get("chat_template")
    if value is None:
        return None
    text = str(value)
    return text if "{{" in text or "{%" in text else Path(text).read_text(encoding="utf-8")


def apply_chat_template(engine: Any, engine_args: Mapping[str, Any]) -> None:
    """Give the engine's tokenizer the entry's chat template: the workloads and lm-eval render prompts
    with the tokenizer, while vLLM's own ``chat_template`` argument serves only ``LLM.chat``."""
    template = chat_template_text(engine_args)
    tokenizer = getattr(engine, "tokenizer", None)
    if template is not None and tokenizer is not None:
        tokenizer.chat_template = template
