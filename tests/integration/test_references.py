"""Integration tier: the plugin's engine against references it does not control.

- Hugging Face transformers' greedy ``generate`` on the same checkpoint: the first 16 tokens of
  8 prompts must be the same token ids, or the first divergence must be a near-tie in
  transformers' own logits (the two runtimes' bf16 kernels round differently; at a near-tie that
  can flip a greedy choice, and nothing after a flip is comparable).
- The plugin's streaming client against the same engine's non-streaming output: the same text.
- The plugin's accuracy path (lm-eval through this engine) against lm-eval's own ``hf`` backend on the same
  checkpoint, with and without the chat template: the same prompts, and scores within a stated tolerance.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# vLLM and torch import with deprecation warnings of their own; they say nothing about the engine's
# output, so this module shows them instead of raising them (as benches/ does)
pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("default")]

PROMPTS = [
    "The capital of France is",
    "Water boils at a temperature of",
    "def fibonacci(n):",
    "Once upon a time, in a small village,",
    "The three primary colours are",
    "To make a cup of tea, first",
    "Photosynthesis is the process by which",
    "The quick brown fox",
]
TOKENS = 16
#: a greedy choice counts as a near-tie when transformers' top two logits at the divergence are
#: this close (in logit units): bf16 rounds to about 3 significant digits, so a logit near 20
#: carries an error of about 0.1, and two kernels' errors add
NEAR_TIE_LOGITS = 0.25


@pytest.fixture(scope="module")
def engine() -> Iterator[Any]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from pytest_slm.checkpoints.resolve import resolve
    from pytest_slm.devices import choose
    from pytest_slm.engine_api import EngineSpec
    from pytest_slm.engines.vllm.engine import VLLMEngine
    from pytest_slm.precisions import get_precision
    from pytest_slm.settings import Settings

    settings = Settings()
    checkpoint = resolve("smollm2-135m", settings.cache_dir)
    device = choose([], gpu_index=0, gpu_index_source=None, worker=None)
    eng = VLLMEngine(EngineSpec("smollm2-135m", get_precision("bf16")), checkpoint, settings, device)
    try:
        yield eng
    finally:
        eng.close()


@pytest.fixture(scope="module")
def hf_greedy(engine: Any) -> list[tuple[list[int], list[list[float]]]]:
    """Transformers' greedy continuation of each prompt and its logits at every step."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(engine.checkpoint.path)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16)
    model.eval()
    out = []
    with torch.no_grad():
        for prompt in PROMPTS:
            ids = tok(prompt, return_tensors="pt").input_ids
            gen = model.generate(
                ids,
                max_new_tokens=TOKENS,
                min_new_tokens=TOKENS,
                do_sample=False,
                output_logits=True,
                return_dict_in_generate=True,
                pad_token_id=tok.eos_token_id,
            )
            new = gen.sequences[0, ids.shape[1] :].tolist()
            out.append((new, [step[0].float().tolist() for step in gen.logits]))
    return out


def test_greedy_tokens_match_transformers_or_diverge_at_a_near_tie(engine: Any, hf_greedy: Any) -> None:
    from pytest_slm.engine_api import SamplingSpec

    ours = engine.generate(PROMPTS, SamplingSpec(TOKENS)).token_ids
    report = []
    for prompt, mine, (theirs, logits) in zip(PROMPTS, ours, hf_greedy, strict=True):
        assert len(mine) == len(theirs) == TOKENS
        agree = next((i for i, (a, b) in enumerate(zip(mine, theirs, strict=True)) if a != b), TOKENS)
        report.append(f"{prompt!r}: {agree}/{TOKENS} tokens agree")
        if agree == TOKENS:
            continue
        step = logits[agree]
        top = sorted(range(len(step)), key=step.__getitem__, reverse=True)[:2]
        gap = step[top[0]] - step[mine[agree]]
        report[-1] += f" (then a near-tie: logit gap {gap:.3f})"
        assert mine[agree] in top and gap <= NEAR_TIE_LOGITS, (
            f"{prompt!r} diverges at token {agree}: vLLM chose {mine[agree]}, transformers {theirs[agree]} "
            f"with a logit gap of {gap:.3f} (top two {top}); not a near-tie"
        )
    print("\n".join(report))
    assert sum(f"{TOKENS}/{TOKENS} tokens agree" in r for r in report) >= len(PROMPTS) // 2, report


def test_streamed_text_equals_non_streamed_text(engine: Any) -> None:
    from pytest_slm.engine_api import SamplingSpec

    sampling = SamplingSpec(TOKENS)
    offline = engine.generate(PROMPTS, sampling)
    streamed = engine.stream(PROMPTS, sampling)
    assert [t.text for t in streamed] == list(offline.texts)
    assert [t.token_ids for t in streamed] == list(offline.token_ids)
    assert all(t.output_tokens == TOKENS for t in streamed)


# -- accuracy: the plugin's lm-eval path on this engine against lm-eval's own hf backend ---------------

#: a zero-shot short-answer task written for this check: sentence completions whose first word is the
#: answer. A base-style continuation of the raw text answers in its first word; the instruct model asked
#: through its chat template answers in a sentence ("The capital of France is Paris."), so the template
#: changes the figure a lot and a plugin that used it where lm-eval does not would be caught
PARITY_ITEMS = [
    ("The capital of France is", "Paris"),
    ("The capital of Japan is", "Tokyo"),
    ("The capital of Italy is", "Rome"),
    ("The capital of Germany is", "Berlin"),
    ("The capital of Spain is", "Madrid"),
    ("The opposite of hot is", "cold"),
    ("The opposite of up is", "down"),
    ("The opposite of day is", "night"),
    ("On a clear day the colour of the sky is", "blue"),
    ("The colour of fresh grass is", "green"),
    ("Frozen water is called", "ice"),
    ("The farm animal that says moo is the", "cow"),
    ("The largest planet in the solar system is", "Jupiter"),
    ("The star at the centre of our solar system is the", "Sun"),
    ("The largest ocean on Earth is the", "Pacific"),
    ("Romeo and Juliet was written by William", "Shakespeare"),
    ("The main language spoken in Brazil is", "Portuguese"),
    ("The chemical symbol for gold is", "Au"),
    ("3 + 4 =", "7"),
    ("The first man to walk on the Moon was Neil", "Armstrong"),
]
PARITY_TASK = "slm_parity_qa"
PARITY_YAML = {
    "task": PARITY_TASK,
    "dataset_path": "json",
    "output_type": "generate_until",
    "test_split": "test",
    "doc_to_text": "{{prompt}}",
    "doc_to_target": "{{answer}}",
    "generation_kwargs": {"until": ["\n"], "do_sample": False, "max_gen_toks": 16},
    "filter_list": [
        {
            "name": "first_word",
            "filter": [{"function": "regex", "regex_pattern": "^\\s*([A-Za-z0-9]+)"}, {"function": "take_first"}],
        }
    ],
    "metric_list": [{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True, "ignore_case": True}],
    "metadata": {"version": 1.0},
}
#: the item-level metric each task is compared on (lm-eval's "metric,filter" key)
PARITY_METRICS = {PARITY_TASK: "exact_match,first_word", "slm_mc": "acc,none"}
PARITY_LIMIT = 20
#: items whose score may differ between the two backends. Both decode greedily (or rank choices by
#: log-likelihood) with the same bf16 weights, but vLLM's CPU/CUDA kernels and transformers' eager PyTorch
#: round differently: at a near-tie a greedy token, or the ranking of two close choices, can flip (see the
#: near-tie test above). An item's score changes only when the flip falls before or inside its answer: a
#: few items of 20 at most; two (10 points) is the tolerance, far below the gap the template makes
PARITY_TOLERANCE_ITEMS = 2


@pytest.fixture(scope="module")
def parity_tasks(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """lm-eval's TaskManager with the parity task and pytest-slm's local tasks (``slm_mc``)."""
    import json

    import yaml

    from pytest_slm.accuracy.evaluate import task_manager
    from pytest_slm.accuracy.tasks import write_local_tasks

    folder = tmp_path_factory.mktemp("parity-tasks")
    data = folder / "parity.jsonl"
    data.write_text("".join(json.dumps({"prompt": q, "answer": a}) + "\n" for q, a in PARITY_ITEMS))
    config = {**PARITY_YAML, "dataset_kwargs": {"data_files": {"test": str(data)}}}
    (folder / f"{PARITY_TASK}.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return task_manager([write_local_tasks(folder / "local", None, None), folder])


def _plugin_accuracy(engine: Any, manager: Any, task: str, chat: bool) -> dict[str, Any]:
    """lm-eval's output of the plugin's accuracy path (``slm_accuracy``'s runner) on this engine."""
    import dataclasses

    from pytest_slm.accuracy.runner import AccuracyRunner
    from pytest_slm.settings import Settings

    settings = dataclasses.replace(
        Settings(), num_fewshot=0, accuracy_limit=PARITY_LIMIT, apply_chat_template=chat, fewshot_as_multiturn=chat
    )
    result = AccuracyRunner(engine, manager, settings, {}).run(task)
    workload = next(m for m in result.metrics if m.info.get("kind") == "quality").info["workload"]
    assert workload["apply_chat_template"] is chat and workload["fewshot_as_multiturn"] is chat
    return result.raw


@pytest.fixture(scope="module")
def hf_lm(engine: Any) -> Any:
    """lm-eval's own hf backend on the engine's checkpoint, built once for the four parity cases (as
    ``lm_eval --model hf --model_args pretrained=...,dtype=bfloat16`` builds it)."""
    import torch
    from lm_eval.models.huggingface import HFLM

    device = "cuda" if torch.cuda.is_available() else "cpu"
    return HFLM(pretrained=str(engine.checkpoint.path), dtype="bfloat16", device=device)


def _lm_eval_hf(lm: Any, manager: Any, task: str, chat: bool) -> dict[str, Any]:
    """lm-eval's own hf backend on the same checkpoint, evaluated as its CLI does
    (``lm_eval --model hf ... [--apply_chat_template]``)."""
    import lm_eval

    out = lm_eval.simple_evaluate(
        model=lm,
        tasks=[task],
        task_manager=manager,
        num_fewshot=0,
        limit=PARITY_LIMIT,
        apply_chat_template=chat,
        fewshot_as_multiturn=chat,  # the CLI's rule: on with the chat template
        log_samples=True,
        bootstrap_iters=0,
    )
    assert out is not None
    return dict(out)


def _answer(sample: dict[str, Any]) -> Any:
    """An item's answer: the generated text, or the index of the choice with the highest log-likelihood."""
    if sample["filtered_resps"] and isinstance(sample["filtered_resps"][0], (list, tuple)):
        lls = [float(r[0]) for r in sample["filtered_resps"]]
        return lls.index(max(lls))
    return sample["resps"]


@pytest.mark.parametrize("task", [PARITY_TASK, "slm_mc"])
@pytest.mark.parametrize("chat", [False, True], ids=["no-template", "chat-template"])
def test_accuracy_matches_lm_eval_hf_backend(engine: Any, hf_lm: Any, parity_tasks: Any, task: str, chat: bool) -> None:
    """The plugin's accuracy (lm-eval through this engine, as ``slm_accuracy`` runs it) against lm-eval's hf
    backend on the same checkpoint and items, without the chat template (both defaults) and with it: the
    same prompts item for item, and at most ``PARITY_TOLERANCE_ITEMS`` items scored differently."""
    ours = _plugin_accuracy(engine, parity_tasks, task, chat)
    theirs = _lm_eval_hf(hf_lm, parity_tasks, task, chat)
    key = PARITY_METRICS[task]
    name = key.split(",")[0]
    mine = sorted((s for s in ours["samples"][task] if s["filter"] == key.split(",")[1]), key=lambda s: s["doc_id"])
    ref = sorted((s for s in theirs["samples"][task] if s["filter"] == key.split(",")[1]), key=lambda s: s["doc_id"])
    assert len(mine) == len(ref) == PARITY_LIMIT
    # the same requests: prompts (templated or not) and generation arguments, item for item
    assert [s["arguments"] for s in mine] == [s["arguments"] for s in ref]
    assert ("<|im_start|>" in mine[0]["arguments"][0][0]) is chat  # SmolLM2's template is ChatML
    differ = [s["doc_id"] for s, r in zip(mine, ref, strict=True) if s[name] != r[name]]
    same = sum(_answer(s) == _answer(r) for s, r in zip(mine, ref, strict=True))
    figure, reference = ours["results"][task][key], theirs["results"][task][key]
    print(
        f"{task} {'with' if chat else 'without'} the chat template, {PARITY_LIMIT} items, zero-shot: "
        f"plugin (vLLM) {key} {figure:.3f}, lm-eval hf {reference:.3f}; items scored differently: {differ}; "
        f"same answer: {same}/{PARITY_LIMIT}"
    )
    assert len(differ) <= PARITY_TOLERANCE_ITEMS, (
        f"{task}: the plugin scored {figure:.3f} and lm-eval's hf backend {reference:.3f}; items {differ} differ "
        f"(tolerance {PARITY_TOLERANCE_ITEMS} of {PARITY_LIMIT})"
    )
    assert abs(figure - reference) <= PARITY_TOLERANCE_ITEMS / PARITY_LIMIT + 1e-9
