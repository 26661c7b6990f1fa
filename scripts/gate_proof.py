"""Is the regression gate trustworthy? A/A false alarms and detection rates from recorded sessions.

Replays real sessions recorded by ``scripts/aa_sessions.py`` (same code, same machine, one after
the other) through pytest-slm's own session rule, as the gate sees them: each session in turn is the
"current" run and K others are its saved baseline sessions. Each comparison is made at the
session's per-comparison level (``--alpha`` over the number of gated metrics, Bonferroni).

- A/A: unchanged sessions. Any "regressed" or "improved" is a false alarm; reported per gate and
  family-wise (the share of sessions with at least one false alarm). Goal: <= 1 % per gate,
  <= 5 % per session.
- Detection: the current session's figure made 10 % worse (latency x 1.10, throughput / 1.10).
  Goal: >= 95 % for TPOT at the quick profile.
- Accuracy (no recorded sessions needed: greedy accuracy is deterministic for a given stack):
  1,000 paired items, about 20 % discordant, with a 5-point drop, through the McNemar rule.

Sessions a run judged invalid are left out (and counted). Usage:
    python scripts/gate_proof.py scripts/data/aa_sessions_cpu.json [--k 3 5 9] [--alpha 0.05]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pytest_slm.compare.rules import compare_paired_items, compare_sessions


def replay(sessions: list[dict], k: int, alpha: float, slowdown: float, rng: np.random.Generator, draws: int):  # type: ignore[no-untyped-def, type-arg]
    """Verdict counts per metric, and per current session whether any metric alarmed."""
    keys = sorted(set.intersection(*(set(s["figures"]) for s in sessions)))
    family = len(keys)
    per_metric: dict[str, Counter[str]] = {key: Counter() for key in keys}
    session_alarm: list[bool] = []
    excluded = 0
    for j, current in enumerate(sessions):
        others = [i for i in range(len(sessions)) if i != j]
        for _ in range(draws):
            history = rng.choice(others, size=k, replace=False)
            alarmed = False
            for key in keys:
                cur = current["figures"][key]
                hist = [sessions[i]["figures"][key] for i in history]
                if not cur["valid"] or not all(h["valid"] for h in hist):
                    excluded += 1
                    continue
                hib = cur["higher_is_better"]
                value = cur["value"] / slowdown if hib else cur["value"] * slowdown
                c = compare_sessions(
                    key, [h["value"] for h in hist], [h["se_log"] for h in hist], value, cur["se_log"],
                    higher_is_better=hib, alpha=alpha / family, min_sessions=k,
                )  # fmt: skip
                per_metric[key][c.verdict] += 1
                alarmed |= c.verdict in ("regressed", "improved")
            session_alarm.append(alarmed)
    return per_metric, session_alarm, excluded, family


def accuracy_drop(rng: np.random.Generator, trials: int, alpha: float) -> float:
    detected = 0
    for _ in range(trials):
        base = (rng.random(1000) < 0.6).astype(float)
        cur = base.copy()
        flip = rng.random(1000) < 0.10  # about 20 % discordant either way
        cur[flip] = 1 - cur[flip]
        correct = np.flatnonzero(cur == 1)
        cur[rng.choice(correct, 50, replace=False)] = 0  # five points lost
        detected += (
            compare_paired_items("acc", list(base), list(cur), tau_points=0.01, alpha=alpha).verdict == "regressed"
        )
    return detected / trials


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sessions", type=Path)
    parser.add_argument("--k", type=int, nargs="+", default=[3, 5, 9])
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--draws", type=int, default=20, help="random baseline choices per held-out session")
    args = parser.parse_args()
    data = json.loads(args.sessions.read_text())
    sessions = data["sessions"]
    rng = np.random.default_rng(0)
    print(f"{len(sessions)} recorded sessions ({args.sessions}); selection {data.get('selection')}")
    for k in args.k:
        if k >= len(sessions):
            continue
        for label, slow in (("A/A", 1.0), ("10 % slower", 1.10)):
            per_metric, alarms, excluded, family = replay(sessions, k, args.alpha, slow, rng, args.draws)
            total: Counter[str] = sum(per_metric.values(), Counter())
            n = sum(total.values())
            print(f"\nK = {k} saved sessions, {label}: {family} gated metrics, alpha {args.alpha}/{family}, "
                  f"{n} comparisons ({excluded} left out as invalid)")  # fmt: skip
            if label == "A/A":
                false = total["regressed"] + total["improved"]
                print(f"  per gate: {100 * false / max(n, 1):.2f} % false alarms ({false}/{n}); "
                      f"family-wise: {100 * np.mean(alarms):.1f} % of sessions; "
                      f"inconclusive {100 * total['inconclusive'] / max(n, 1):.1f} %")  # fmt: skip
            for key, counts in sorted(per_metric.items()):
                m = sum(counts.values())
                shown = ", ".join(f"{v} {100 * counts[v] / max(m, 1):.0f} %" for v in
                                  ("pass", "inconclusive", "regressed", "improved") if counts[v])  # fmt: skip
                print(f"  {key}: {shown}")
    print(f"\naccuracy, 1,000 paired items, 5-point drop, alpha 0.05/30: detected "
          f"{100 * accuracy_drop(rng, 300, args.alpha / 30):.0f} %")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
