"""Small results.json documents for the report tests, shaped like the plugin writes them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pytest_slm.results import SCHEMA


def rec(precision: str, test: str, metric: str, value: float, **kw: Any) -> dict[str, Any]:
    """A results.json record (model ``m`` unless ``model=``) as the plugin writes it."""
    unit = kw.pop("unit", "s" if metric.endswith("_s") else "1")
    model = kw.pop("model", "m")
    engine = f"{model}-{precision}"
    return {
        "test": f"benches/t.py::{test}[{engine}" + (f"-{kw.pop('variant')}]" if "variant" in kw else "]"),
        "outcome": kw.pop("outcome", "passed"),
        "model": model,
        "precision": precision,
        "engine_id": engine,
        "metric": metric,
        "value": value,
        "unit": unit,
        "higher_is_better": kw.pop("higher_is_better", not metric.endswith("_s")),
        "n": kw.pop("n", None),
        "stderr": kw.pop("stderr", None),
        "samples": kw.pop("samples", []),
        "info": kw.pop("info", {}),
        "threshold": None,
        "baseline": kw.pop("baseline", None),
        "baseline_key": None,
        **kw,
    }


def cell(
    precision: str, ttft: float, tps: float, acc: float, acc_se: float, verdict: str | None = None, model: str = "m"
) -> list[dict[str, Any]]:
    """The records of one model × precision: latency (two workloads), throughput, memory, accuracy."""
    base = {"verdict": verdict} if verdict else None
    single = {"workload": {"concurrency": 1, "max_new_tokens": 16}}
    batch = {"workload": {"concurrency": 4, "max_new_tokens": 16}}
    mc = {"task": "slm_mc", "filter": "none"}
    return [
        rec(
            precision,
            "test_ttft",
            "ttft_p50_s",
            ttft,
            model=model,
            variant="single",
            samples=[ttft, ttft * 1.1],
            info=single,
        ),
        rec(precision, "test_ttft", "ttft_p50_s", ttft * 3, model=model, variant="batch", info=batch),
        rec(precision, "test_tpot", "tpot_p50_s", ttft / 2, model=model, variant="single", baseline=base, info=single),
        rec(
            precision,
            "test_offline_throughput",
            "output_tokens_per_s",
            tps,
            model=model,
            unit="token/s",
            samples=[tps - 1, tps + 1],
        ),
        rec(precision, "test_memory", "peak_rss_bytes", 3.4e9, model=model, unit="B", higher_is_better=False),
        rec(
            precision, "test_checkpoint_size", "checkpoint_bytes", 2.7e8, model=model, unit="B", higher_is_better=False
        ),
        rec(
            precision,
            "test_accuracy",
            "slm_mc.acc",
            acc,
            model=model,
            variant="slm_mc",
            stderr=acc_se,
            n=40,
            info={**mc, "metric": "acc"},
        ),
        rec(
            precision,
            "test_accuracy",
            "slm_mc.acc_norm",
            acc / 2,
            model=model,
            variant="slm_mc",
            info={**mc, "metric": "acc_norm"},
        ),
    ]


def document(records: list, **env: Any) -> dict[str, Any]:
    environment = {"hardware": {"cpu_model": "Test CPU", "cpu_count": 2}, "versions": {"vllm": "0.32.0"}, **env}
    return {"schema": SCHEMA, "environment": environment, "records": records, "skipped": []}


def write(path: Path, doc: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc) if not isinstance(doc, str) else doc)
    return path
