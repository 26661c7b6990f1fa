"""Quantize one checkpoint with llmcompressor ``oneshot``; run as a subprocess.

``python -m pytest_slm.checkpoints.quantize_worker SPEC.json``. The subprocess frees all its
memory when done, and can run in a separate virtual environment (``--slm-quantize-python``).
Its last stdout line is ``SLM_RESULT {json}`` with what it actually used.
"""

from __future__ import annotations

import functools
import importlib
import json
import sys
import time
from collections.abc import Callable
from typing import Any

RESULT_PREFIX = "SLM_RESULT "
#: llmcompressor's functions that update a layer's weights column by column in a Python loop of small tensor
#: ops (module, name): on a CPU they run on one thread, since the threads' synchronisation costs more than it
#: saves there. Measured on the 2-core machine: SparseGPT, one 1536x576 layer, 0.37 s on one thread and 0.79 s
#: on two; GPTQ W4A16 of SmolLM2-135M, 27.5 s of GPTQ on one thread and more than 150 s on two. The
#: calibration's forward passes keep every thread: with 512 samples a whole run on one thread took longer.
ONE_THREAD_ON_CPU = (
    ("llmcompressor.modifiers.gptq.base", "quantize_weight"),
    ("llmcompressor.modifiers.pruning.sparsegpt.base", "sparsify_weight"),
)


def _one_thread(fn: Callable[..., Any]) -> Callable[..., Any]:
    import torch

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return fn(*args, **kwargs)
        finally:
            torch.set_num_threads(threads)

    return run


def _column_loops_on_one_thread() -> None:
    """Run :data:`ONE_THREAD_ON_CPU` on one thread (where this llmcompressor has them; else as they are)."""
    for module_name, name in ONE_THREAD_ON_CPU:
        module = importlib.import_module(module_name)
        fn = getattr(module, name, None)
        if callable(fn) and not hasattr(fn, "__wrapped__"):
            setattr(module, name, _one_thread(fn))
        elif fn is None:
            print(f"[pytest-slm] {module_name} has no {name}: it runs on every thread", flush=True)


def _modifiers(steps: list[dict[str, Any]]) -> list[Any]:
    from llmcompressor.modifiers.gptq import GPTQModifier
    from llmcompressor.modifiers.pruning import SparseGPTModifier, WandaPruningModifier
    from llmcompressor.modifiers.quantization import QuantizationModifier
    from llmcompressor.modifiers.transform import SmoothQuantModifier  # type: ignore[attr-defined]
    from llmcompressor.modifiers.transform.awq import AWQModifier

    classes = {
        c.__name__: c
        for c in (
            GPTQModifier,
            QuantizationModifier,
            SmoothQuantModifier,
            AWQModifier,
            SparseGPTModifier,
            WandaPruningModifier,
        )
    }
    out = []
    for step in steps:
        kwargs = dict(step)
        name = kwargs.pop("modifier")
        out.append(classes[name](**kwargs))
    return out


def _dataset(spec: dict[str, Any], tokenizer: Any) -> Any:
    import datasets

    n = spec["num_samples"]
    if spec.get("texts_file"):
        with open(spec["texts_file"], encoding="utf-8") as f:
            texts = [json.loads(line)["text"] for line in f]
        return datasets.Dataset.from_dict({"text": texts})
    ds = datasets.load_dataset(spec["hub_id"], split=spec["split"])
    if len(ds) < n:
        raise SystemExit(f"calibration dataset {spec['hub_id']} split {spec['split']} has {len(ds)} rows; {n} asked")
    ds = ds.shuffle(seed=0).select(range(n))
    if "text" in ds.column_names:
        return ds.select_columns(["text"])
    if "messages" in ds.column_names:
        return ds.map(
            lambda r: {"text": tokenizer.apply_chat_template(r["messages"], tokenize=False)},
            remove_columns=ds.column_names,
        )
    raise SystemExit(f"calibration dataset {spec['hub_id']} has no 'text' or 'messages' column: {ds.column_names}")


def main(spec_path: str) -> None:
    with open(spec_path, encoding="utf-8") as f:
        spec = json.load(f)
    import torch
    from llmcompressor import oneshot  # type: ignore[attr-defined]
    from transformers import AutoModelForCausalLM, AutoTokenizer

    t0 = time.perf_counter()
    if not torch.cuda.is_available():
        _column_loops_on_one_thread()
    model = AutoModelForCausalLM.from_pretrained(spec["source"], dtype="auto")
    tokenizer: Any = AutoTokenizer.from_pretrained(spec["source"])
    kwargs: dict[str, Any] = {}
    used = 0
    tokens = 0
    if spec["calibrate"]:
        ds = _dataset(spec, tokenizer)
        used = min(len(ds), spec["num_samples"])
        if used < spec["num_samples"]:
            raise SystemExit(f"calibration has {used} samples; {spec['num_samples']} asked")
        tokens = sum(min(len(tokenizer(t)["input_ids"]), spec["max_sequence_length"]) for t in ds["text"][:used])
        kwargs = {
            "dataset": ds,
            "num_calibration_samples": used,
            "max_seq_length": spec["max_sequence_length"],
            "shuffle_calibration_samples": False,
        }
    print(
        f"[pytest-slm] quantizing {spec['source']} with {[s['modifier'] for s in spec['recipe']]}, "
        f"{used} calibration samples",
        flush=True,
    )
    oneshot(model=model, processor=tokenizer, recipe=_modifiers(spec["recipe"]), **kwargs)
    model.save_pretrained(spec["out"], save_compressed=True)
    tokenizer.save_pretrained(spec["out"])
    print(
        RESULT_PREFIX
        + json.dumps(
            {"samples_used": used, "calibration_tokens": tokens, "quantize_s": round(time.perf_counter() - t0, 2)}
        ),
        flush=True,
    )


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m pytest_slm.checkpoints.quantize_worker SPEC.json")
    main(sys.argv[1])
