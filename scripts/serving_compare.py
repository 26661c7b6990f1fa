"""pytest-slm's serving client against vLLM's own ``vllm bench serve`` on the same server and prompts.

Starts vLLM's OpenAI server once (as ``--slm-engine openai`` does), then for each load level runs
pytest-slm's load generator and ``vllm bench serve`` (through ``scripts/vllm_bench_serve.py``) on the
same prompts, same output length (EOS ignored), same concurrency or Poisson rate and seed, in
alternating order, and writes ``compare.json`` and ``compare.md`` to ``--out``. A figures script for
notes, not part of the test suite; run it under the heavy-job lock:

    flock /tmp/slm-heavy.lock .venv/bin/python scripts/serving_compare.py --out /tmp/compare
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def ours(engine: Any, plans: list[Any], load: Any) -> dict[str, Any]:
    from pytest_slm.measure.latency import EXTRACTORS
    from pytest_slm.stats import percentile

    run = engine.serve(plans, load)
    done = [r.trace for r in run.completed if r.trace is not None]
    out: dict[str, Any] = {
        "completed": len(done),
        "failed": len(run.failed),
        "request_throughput": len(done) / run.wall_s,
        "output_throughput": sum(t.output_tokens for t in done) / run.wall_s,
        "client_loop_lag_p99_ms": (run.loop_lag.get("p99_s") or 0) * 1e3,
        "client_loop_lag_max_ms": (run.loop_lag.get("max_s") or 0) * 1e3,
        "send_skew_p99_ms": percentile([s for r in run.requests if (s := r.send_skew_s) is not None], 99) * 1e3,
        "server_ttft_mean_ms": (run.server_metrics.get("ttft_mean_s") or math.nan) * 1e3,
    }
    for kind in ("ttft", "tpot", "itl", "e2e"):
        values = [v for t in done for v in EXTRACTORS[kind](t)]
        name = "e2el" if kind == "e2e" else kind
        out[f"median_{name}_ms"] = statistics.median(values) * 1e3
        out[f"p99_{name}_ms"] = percentile(values, 99) * 1e3
        out[f"mean_{name}_ms"] = statistics.fmean(values) * 1e3
    return out


def vllm_bench(
    url: str, model: str, tokenizer: str, prompts: Path, load: Any, out: Path, max_tokens: int
) -> dict[str, Any]:
    name = f"vllm-{load.id}.json"
    cmd = [
        sys.executable, str(REPO / "scripts" / "vllm_bench_serve.py"),
        "--backend", "vllm", "--base-url", url, "--endpoint", "/v1/completions",
        "--model", model, "--tokenizer", tokenizer,
        "--dataset-name", "custom", "--dataset-path", str(prompts), "--skip-chat-template", "--disable-shuffle",
        "--custom-output-len", str(max_tokens), "--ignore-eos", "--temperature", "0",
        "--num-prompts", str(load.requests), "--seed", str(load.seed),
        "--percentile-metrics", "ttft,tpot,itl,e2el", "--metric-percentiles", "50,99",
        "--save-result", "--result-dir", str(out), "--result-filename", name,
    ]  # fmt: skip
    if load.kind == "concurrency":
        cmd += ["--max-concurrency", str(int(load.value)), "--request-rate", "inf"]
    else:
        cmd += ["--request-rate", "inf" if math.isinf(load.value) else str(load.value)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    (out / f"vllm-{load.id}.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise RuntimeError(f"vllm bench serve failed ({proc.returncode}): {proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads((out / name).read_text())
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--levels", nargs="+", default=["c1", "c8", "r2", "rinf"])
    ap.add_argument("--requests", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from pytest_slm.checkpoints.resolve import resolve
    from pytest_slm.devices import DeviceChoice
    from pytest_slm.engine_api import EngineSpec, SamplingSpec
    from pytest_slm.engines.openai.engine import OpenAIEngine
    from pytest_slm.measure.prompts import load_prompt_set
    from pytest_slm.precisions import resolve_precisions
    from pytest_slm.serving.load import LoadSpec, PlannedRequest
    from pytest_slm.settings import Settings

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    settings = Settings(output=out)
    ckpt = resolve("smollm2-135m", settings.cache_dir)
    spec = EngineSpec("smollm2-135m", resolve_precisions(["bf16"])[0])
    prompt_set = load_prompt_set("shipped")
    prompts = prompt_set.take(args.requests)
    jsonl = out / "prompts.jsonl"
    jsonl.write_text("".join(json.dumps({"prompt": p, "output_tokens": args.max_new_tokens}) + "\n" for p in prompts))
    plans = [PlannedRequest(i, p, SamplingSpec(args.max_new_tokens)) for i, p in enumerate(prompts)]
    loads = [
        LoadSpec("concurrency", int(lv[1:]), args.requests)
        if lv.startswith("c")
        else LoadSpec("rate", float(lv[1:]), args.requests)
        for lv in args.levels
    ]
    engine = OpenAIEngine(spec, ckpt, settings, DeviceChoice("cpu", "serving_compare"))
    rows = []
    try:
        engine.stream(prompts[:2], SamplingSpec(args.max_new_tokens))  # warm-up
        import vllm

        for i, load in enumerate(loads):
            pair = {}
            order = ("ours", "vllm") if i % 2 == 0 else ("vllm", "ours")
            for who in order:
                if who == "ours":
                    pair[who] = ours(engine, plans, load)
                else:
                    pair[who] = vllm_bench(
                        engine.base_url, engine.model, str(ckpt.path), jsonl, load, out, args.max_new_tokens
                    )
            rows.append({"level": load.id, **pair})
            print(load.id, json.dumps({k: round(v, 2) for k, v in pair["ours"].items()}), flush=True)
        doc = {
            "server": engine.describe(),
            "vllm_version": vllm.__version__,
            "prompt_set": dict(prompt_set.identity),
            "requests": args.requests,
            "max_new_tokens": args.max_new_tokens,
            "rows": rows,
        }
    finally:
        engine.close()
    (out / "compare.json").write_text(json.dumps(doc, indent=1, default=str))
    keys = [
        ("median_ttft_ms", "TTFT p50 ms"),
        ("p99_ttft_ms", "TTFT p99 ms"),
        ("median_tpot_ms", "TPOT p50 ms"),
        ("median_itl_ms", "ITL p50 ms"),
        ("p99_itl_ms", "ITL p99 ms"),
        ("request_throughput", "req/s"),
        ("output_throughput", "out tok/s"),
    ]
    lines = ["| level | figure | pytest-slm | vllm bench serve | ratio |", "|---|---|---|---|---|"]
    for row in rows:
        for key, label in keys:
            a, b = row["ours"].get(key), row["vllm"].get(key)
            ratio = f"{a / b:.3f}" if a and b else "–"
            lines.append(f"| {row['level']} | {label} | {a:.2f} | {b:.2f} | {ratio} |")
        lines.append(f"| {row['level']} | client loop lag p99 / max ms | {row['ours']['client_loop_lag_p99_ms']:.2f} / "
                     f"{row['ours']['client_loop_lag_max_ms']:.2f} | | |")  # fmt: skip
    (out / "compare.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
