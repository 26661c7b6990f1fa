"""Where does this machine's between-session spread come from: the engine instance, or time?

Starts one vLLM engine per process (as each benchmark session does), times the single-stream
generation of 64 tokens in blocks of 10 requests spaced ``gap`` seconds apart, and appends one JSON
line per engine to ``out``. If blocks of one engine differ as much as engines do, the spread is the
machine's state over time (neighbours, host contention), not the engine's start; repetitions taken
back to back then underestimate a session's uncertainty, and more sessions (``--slm-confirm``), not
more repetitions, narrow it. A diagnostic, not a benchmark: it calls vLLM directly.

Usage (one engine per call; run it several times):
    python scripts/noise_timescale.py CHECKPOINT_DIR --blocks 4 --gap 20 --out scripts/data/noise_timescale_cpu.jsonl
    python scripts/noise_timescale.py --summary scripts/data/noise_timescale_cpu.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np

PROMPT = "Explain in two sentences why the sky is blue."


def kernel_s() -> float:
    """A reference matmul's median time, as a rough check of the machine's speed."""
    a = np.random.default_rng(0).standard_normal((512, 512)).astype(np.float32)
    times = []
    for _ in range(20):
        t = time.perf_counter()
        a @ a
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def measure(checkpoint: str, blocks: int, gap: float, out: Path) -> None:
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    from vllm import LLM, SamplingParams

    llm = LLM(model=checkpoint, tokenizer=checkpoint, enforce_eager=True, enable_prefix_caching=False,
              dtype="bfloat16", max_model_len=2048, seed=0)  # fmt: skip
    sampling = SamplingParams(max_tokens=64, min_tokens=64, ignore_eos=True, temperature=0.0)
    for _ in range(3):  # warm-up
        llm.generate([PROMPT], sampling, use_tqdm=False)
    result = []
    for b in range(blocks):
        k = kernel_s()
        times = []
        for _ in range(10):
            t = time.perf_counter()
            llm.generate([PROMPT], sampling, use_tqdm=False)
            times.append(time.perf_counter() - t)
        result.append({"t": time.time(), "median_s": statistics.median(times), "kernel": k, "samples": times})
        if b < blocks - 1:
            time.sleep(gap)
    with out.open("a") as f:
        f.write(json.dumps({"pid": os.getpid(), "blocks": result}) + "\n")


def spreads(path: Path) -> dict[str, float]:
    """Log standard deviations: of blocks within one engine, of the engines' first blocks, of their
    means (and what independent blocks would give), of their fastest requests."""
    engines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    logs = np.array([[np.log(b["median_s"]) for b in e["blocks"]] for e in engines])
    within = float(np.mean(logs.var(axis=1, ddof=1)))
    floor = np.array([min(min(b["samples"]) for b in e["blocks"]) for e in engines])
    return {
        "engines": len(engines),
        "blocks": logs.shape[1],
        "within_engine": float(np.sqrt(within)),
        "first_blocks": float(logs[:, 0].std(ddof=1)),
        "engine_means": float(logs.mean(axis=1).std(ddof=1)),
        "independent_blocks_would_give": float(np.sqrt(within / logs.shape[1])),
        "fastest_request": float(np.log(floor).std(ddof=1)),
    }


def summary(path: Path) -> None:
    s = spreads(path)
    print(f"{s['engines']} engines x {s['blocks']} blocks of 10 requests; log standard deviations:")
    print(f"  blocks within one engine: {100 * s['within_engine']:.2f} %")
    print(f"  engines' first blocks:    {100 * s['first_blocks']:.2f} %")
    print(f"  engines' means:           {100 * s['engine_means']:.2f} % "
          f"(independent blocks would give {100 * s['independent_blocks_would_give']:.2f} %)")  # fmt: skip
    print(f"  engines' fastest request: {100 * s['fastest_request']:.2f} %")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", nargs="?")
    parser.add_argument("--blocks", type=int, default=4)
    parser.add_argument("--gap", type=float, default=20.0)
    parser.add_argument("--out", type=Path, default=Path("noise_timescale.jsonl"))
    parser.add_argument("--summary", type=Path)
    args = parser.parse_args()
    if args.summary:
        summary(args.summary)
    elif args.checkpoint:
        measure(args.checkpoint, args.blocks, args.gap, args.out)
    else:
        parser.error("a checkpoint directory, or --summary FILE")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
