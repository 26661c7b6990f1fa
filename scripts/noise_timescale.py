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


def summary(path: Path) -> None:
    engines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    logs = np.array([[np.log(b["median_s"]) for b in e["blocks"]] for e in engines])
    n_blocks = logs.shape[1]
    within = float(np.mean(logs.var(axis=1, ddof=1)))
    print(f"{len(engines)} engines x {n_blocks} blocks of 10 requests")
    print(f"  block-to-block sd within one engine: {100 * np.sqrt(within):.2f} % (log)")
    print(f"  sd of the engines' first blocks:      {100 * logs[:, 0].std(ddof=1):.2f} %")
    print(f"  sd of the engines' means:             {100 * logs.mean(axis=1).std(ddof=1):.2f} % "
          f"(if blocks were independent: {100 * np.sqrt(within / n_blocks):.2f} %)")  # fmt: skip
    floor = np.array([min(min(b["samples"]) for b in e["blocks"]) for e in engines])
    print(f"  sd of the engines' fastest request:   {100 * np.log(floor).std(ddof=1):.2f} %")
    every = np.concatenate([b["samples"] for e in engines for b in e["blocks"]])
    print(f"  requests: fastest {every.min():.3f} s, median {np.median(every):.3f} s, slowest {every.max():.3f} s")


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
