"""Local lm-eval tasks, written as YAML into a directory given to lm-eval's ``TaskManager``.

- ``gsm8k_local``: lm-eval's own ``gsm8k`` config (``include``d from the installed lm-eval, so
  prompt format, few-shot split, filters and metrics are exactly lm-eval's), reading local
  copies of the GSM8K splits instead of the hub: the subset shipped in ``data/gsm8k``, or
  ``--slm-local-data DIR``/gsm8k.
- ``slm_mc``: a small multiple-choice set pytest-slm ships (exercises the log-likelihood path).
- ``slm_ppl``: perplexity (word, byte, bits per byte) over a text corpus via
  ``loglikelihood_rolling``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

DATA = Path(__file__).parent / "data"
#: the GSM8K items pytest-slm ships (MIT, OpenAI; see its LICENSE): the first 100 test items and
#: the first 500 train items (the pool lm-eval draws the few-shot examples from)
GSM8K_SHIPPED = DATA / "gsm8k"
LOCAL_TASKS = ("gsm8k_local", "slm_mc", "slm_ppl")


class GSM8KDataError(ValueError):
    """A ``--slm-local-data`` GSM8K folder that cannot be used; the message says what is missing."""


def _lm_eval_task_yaml(name: str) -> Path:
    import lm_eval.tasks

    path = Path(lm_eval.tasks.__file__).parent / name
    if not path.is_file():
        raise FileNotFoundError(f"the installed lm-eval has no {name}")
    return path


def _split_file(folder: Path, split: str) -> Path | None:
    """``<split>.jsonl``, else the ``<split>_first<N>.jsonl`` with the largest N, else None."""
    whole = folder / f"{split}.jsonl"
    if whole.is_file():
        return whole
    firsts = [
        (int(m.group(1)), p)
        for p in folder.glob(f"{split}_first*.jsonl")
        if p.is_file() and (m := re.fullmatch(rf"{split}_first(\d+)\.jsonl", p.name))
    ]
    return max(firsts)[1] if firsts else None


def gsm8k_files(local_data: Path | None) -> dict[str, str]:
    """The GSM8K train and test files ``gsm8k_local`` reads: ``<local_data>/gsm8k/`` when that
    folder exists (a user's own copy, e.g. the full splits), else the subset pytest-slm ships.

    A ``gsm8k/`` folder that lacks a split is an error, never a silent fall-back to the subset.
    """
    folder = local_data / "gsm8k" if local_data is not None else None
    if folder is None or not folder.is_dir():
        folder = GSM8K_SHIPPED
    pick = {}
    for split in ("train", "test"):
        found = _split_file(folder, split)
        if found is None:
            raise GSM8KDataError(
                f"{folder} has no GSM8K {split} split: expected {split}.jsonl or {split}_first<N>.jsonl "
                '(JSON lines {"question": ..., "answer": "... #### 42"})'
            )
        pick[split] = str(found.resolve())
    return pick


def corpus_jsonl(corpus: Path, dest: Path) -> Path:
    """A JSONL of ``{"text": ...}`` documents from a .txt (blank-line separated) or JSONL corpus.

    JSONL rows may carry ``text``, or ``question`` and ``answer`` (as GSM8K does).
    """
    docs: list[str] = []
    if corpus.suffix == ".jsonl":
        for line in corpus.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                docs.append(row["text"] if "text" in row else f"{row['question']}\n{row['answer']}")
    else:
        docs = [p.strip() for p in corpus.read_text(encoding="utf-8").split("\n\n") if p.strip()]
    out = dest / "slm_ppl.jsonl"
    out.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs), encoding="utf-8")
    return out


def write_local_tasks(dest: Path, local_data: Path | None, corpus: Path | None) -> Path:
    """Write the local task YAMLs into ``dest``; returns ``dest`` (an lm-eval include path)."""
    import yaml

    dest.mkdir(parents=True, exist_ok=True)
    configs: dict[str, dict[str, Any]] = {}
    configs["gsm8k_local"] = {
        "include": str(_lm_eval_task_yaml("gsm8k/gsm8k.yaml")),
        "task": "gsm8k_local",
        "tag": ["slm_local"],
        "dataset_path": "json",
        "dataset_name": None,
        "dataset_kwargs": {"data_files": gsm8k_files(local_data)},
    }
    configs["slm_mc"] = {
        "task": "slm_mc",
        "tag": ["slm_local"],
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(DATA / "slm_mc.jsonl")}},
        "output_type": "multiple_choice",
        "test_split": "test",
        "fewshot_split": "test",
        "doc_to_text": "Question: {{question}}\nAnswer:",
        "doc_to_choice": "{{choices}}",
        "doc_to_target": "{{answer}}",
        "metric_list": [
            {"metric": "acc", "aggregation": "mean", "higher_is_better": True},
            {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True},
        ],
        "metadata": {"version": 1.0},
    }
    ppl_source = corpus if corpus is not None else DATA / "slm_ppl_default.txt"
    configs["slm_ppl"] = {
        "task": "slm_ppl",
        "tag": ["slm_local"],
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(corpus_jsonl(ppl_source, dest))}},
        "output_type": "loglikelihood_rolling",
        "test_split": "test",
        "doc_to_text": "",
        "doc_to_target": "{{text}}",
        "metric_list": [{"metric": "word_perplexity"}, {"metric": "byte_perplexity"}, {"metric": "bits_per_byte"}],
        "metadata": {"version": 1.0, "corpus": str(ppl_source)},
    }
    for name, cfg in configs.items():
        (dest / f"{name}.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return dest
