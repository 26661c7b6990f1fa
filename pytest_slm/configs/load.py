"""Reading model configs: a YAML file, or a directory of them, into one :class:`ModelsConfig`.

Pytest-free; yaml is imported when a config is read.
"""

from __future__ import annotations

import re
from pathlib import Path

from pytest_slm.configs.schema import DEFAULT_TOKEN_ENV, ModelConfigError, ModelEntry, ModelsConfig
from pytest_slm.configs.validate import At, entry, mapping, text

CONFIG_SUFFIXES = (".yaml", ".yml")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


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
    top = mapping(data, At(file), ("models", "token_env"), required=("models",))
    token_env = DEFAULT_TOKEN_ENV
    if top.get("token_env") is not None:
        token_env = text(top["token_env"], At(file, None, "token_env"))
        if not _ENV_NAME.match(token_env):
            raise At(file, None, "token_env").error(f"{token_env!r} is not an environment variable name")
    models = top["models"]
    if not isinstance(models, list) or not models:
        raise At(file, None, "models").error("must be a non-empty list of model entries")
    return [entry(raw, file, i, token_env) for i, raw in enumerate(models)]


def load(path: Path) -> ModelsConfig:
    """Load a config file or a directory of them; names must be unique across all of them."""
    files = config_files(path)
    entries: list[ModelEntry] = []
    for file in files:
        for checked in load_file(file):
            twin = next((e for e in entries if e.name == checked.name), None)
            if twin is not None:
                raise At(checked.file, repr(checked.name), "name").error(f"the name is also used in {twin.file}")
            entries.append(checked)
    return ModelsConfig(tuple(files), tuple(entries))
