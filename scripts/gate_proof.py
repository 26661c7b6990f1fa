"""Is the regression gate trustworthy? A/A false alarms and detection rates from recorded sessions.

Replays real sessions recorded by ``scripts/aa_sessions.py`` (same code, same machine, one after
the other) through pytest-slm's own comparison (``compare_metric``: exact rule for deterministic
figures, the between-session rule for timings), as the gate sees them: each session in turn is the
"current" run and K others are its saved baseline sessions. Each comparison is made at the
session's per-comparison level (``--alpha`` over the number of gated metrics, Bonferroni).

- A/A: unchanged sessions. Any "regressed" or "improved" is a false alarm; reported per gate and
  family-wise (the share of sessions with at least one false alarm). Goal: <= 1 % per gate,
  <= 5 % per session.
- Detection: the current session's figure made 10 % worse (latency x 1.10, throughput / 1.10).
  Goal: >= 95 % for TPOT at the quick profile.
- Accuracy (no recorded sessions needed: greedy accuracy is deterministic for a given stack):
  1,000 paired items, about 20 % discordant, with a 5-point drop, through the McNemar rule; with
  ``--items REF CAND``, the same drop injected into two real runs' per-item scores.

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

from pytest_slm.compare.judge import baseline_spread, compare_metric, machine_check
from pytest_slm.compare.rules import compare_paired_items
from pytest_slm.measure.machine import SHIFT_REASON_PREFIX
from pytest_slm.record import Metric


def measured_validly(figure: dict) -> bool:  # type: ignore[type-arg]
    """Whether the run judged its own window trustworthy (CPU load, warm-up, the kernel around the
    window, ...); an invalid verdict that came from the baseline comparison (the machine-shift
    reason) does not count: the replay applies the shift check itself, to whichever sessions form
    the baseline."""
    reasons = figure.get("invalid_reasons") or []
    return bool(figure["valid"]) or (bool(reasons) and all(r.startswith(SHIFT_REASON_PREFIX) for r in reasons))


def metric_of(key: str, cur: dict, slowdown: float) -> Metric:  # type: ignore[type-arg]
    """The current session's figure of ``key``, made ``slowdown`` times worse."""
    hib = cur["higher_is_better"]
    factor = (1 / slowdown) if hib else slowdown
    return Metric(key.split("::")[-1], cur["value"] * factor, cur["unit"], hib,
                  samples=tuple(x * factor for x in cur["samples"]),
                  info={"se_log": cur["se_log"], "machine": cur.get("machine")})  # fmt: skip


def entry_of(hist: list[dict]) -> dict:  # type: ignore[type-arg]
    """A baseline entry holding ``hist`` as its saved sessions (oldest first)."""
    last = hist[-1]
    return {
        "value": last["value"], "samples": last["samples"], "higher_is_better": last["higher_is_better"],
        "unit": last["unit"],
        "sessions": [{"value": h["value"], "se_log": h["se_log"], "machine": h.get("machine")} for h in hist],
    }  # fmt: skip


def replay(
    sessions: list[dict],
    k: int,
    alpha: float,
    slowdown: float,
    rng: np.random.Generator,
    draws: int,
    pooled: bool = True,
    confirm: int = 1,
    adjacent: bool = False,
):  # type: ignore[no-untyped-def, type-arg]
    """Verdict counts per metric, and per current session whether any metric alarmed.

    ``confirm`` > 1 replays ``--slm-confirm``: a figure that did not pass is measured again in
    ``confirm - 1`` more sessions (other recorded sessions, neither the baseline's nor the current
    one, made as much slower), and its verdict is the one on the geometric mean of them all;
    ``adjacent``: those sessions are the ones recorded right after the current one (as a CI
    confirmation runs minutes later, perhaps in the same state of the machine), not random ones.

    Each draw picks K other sessions as one saved baseline for every figure (as a real baseline
    file holds the same sessions for all its entries), so the file-wide spread (``baseline_spread``:
    pooled between-session spreads, the kernel's window-to-window spread) comes from those K only."""
    # every gated figure recorded in enough sessions (an older recorder dropped the figures of
    # records the gate had failed: those sessions are missing for that figure only)
    counts = Counter(key for s in sessions for key in s["figures"])
    keys = sorted(key for key, n in counts.items() if n > k)
    family = len(keys)
    per_metric: dict[str, Counter[str]] = {key: Counter() for key in keys}
    mdes: dict[str, list[float]] = {key: [] for key in keys}
    session_alarm: list[bool] = []
    excluded = 0
    for j, current in enumerate(sessions):
        others = [i for i in range(len(sessions)) if i != j]
        for _ in range(draws):
            order = list(rng.permutation(others))
            entries = {}
            for key in keys:
                with_key = [i for i in order if key in sessions[i]["figures"]][:k]  # the draw's first K holding it
                if len(with_key) == k:
                    entries[key] = (with_key, entry_of([sessions[i]["figures"][key] for i in sorted(with_key)]))
            spread = baseline_spread({key: entry for key, (_, entry) in entries.items()}) if pooled else None
            alarmed = False
            for key, (history, entry) in entries.items():
                if key not in current["figures"]:
                    continue
                cur = current["figures"][key]
                if not measured_validly(cur) or not all(measured_validly(sessions[i]["figures"][key]) for i in history):
                    excluded += 1
                    continue
                metric = metric_of(key, cur, slowdown)
                if machine_check(metric, entry, spread) is not None:  # the gate's own check: the machine moved
                    per_metric[key]["invalid (machine)"] += 1
                    continue
                c = compare_metric(metric, entry, alpha=alpha / family, min_sessions=k, spread=spread)
                if confirm > 1 and c.verdict != "pass":
                    after = range(j + 1, len(sessions)) if adjacent else order
                    spare = [i for i in after if i not in history and key in sessions[i]["figures"]
                             and measured_validly(sessions[i]["figures"][key])][: confirm - 1]  # fmt: skip
                    if len(spare) < confirm - 1:
                        excluded += 1
                        continue
                    earlier = [metric_of(key, sessions[i]["figures"][key], slowdown).value for i in spare]
                    c = compare_metric(metric, entry, alpha=alpha / family, min_sessions=k, spread=spread,
                                       earlier=earlier)  # fmt: skip
                    per_metric[key]["(confirmed)"] += 1
                per_metric[key][c.verdict] += 1
                if c.mde is not None:
                    mdes[key].append(c.mde)
                alarmed |= c.verdict in ("regressed", "improved")
            session_alarm.append(alarmed)
    return per_metric, mdes, session_alarm, excluded, family


def machine_tracking(sessions: list[dict]) -> None:  # type: ignore[type-arg]
    """Does the reference kernel move with the figures? Per gated timing, the correlation across
    sessions of log(figure) (sign: up = slower) with log(kernel time), and the kernel's own spread."""
    keys = sorted({k for s in sessions for k, f in s["figures"].items() if f.get("machine")})
    if not keys:
        print("\nreference kernel: not recorded in these sessions")
        return
    print("\nreference kernel (time per call) against the figures, across sessions:")
    for key in keys:
        pairs = [
            (f["value"], f["machine"]["probe_s"], f["higher_is_better"])
            for s in sessions
            if (f := s["figures"].get(key)) and f.get("machine") and measured_validly(f)
        ]
        if len(pairs) < 3:
            continue
        slow = np.log([v for v, _, _ in pairs]) * (-1 if pairs[0][2] else 1)
        probe = np.log([p for _, p, _ in pairs])
        r = float(np.corrcoef(slow, probe)[0, 1]) if np.std(slow) > 0 and np.std(probe) > 0 else float("nan")
        print(
            f"  {key}: r = {r:+.2f} over {len(pairs)} sessions; figure sd {100 * np.std(slow, ddof=1):.1f} %, "
            f"kernel sd {100 * np.std(probe, ddof=1):.1f} %"
        )


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


def item_scores(path: Path) -> dict[str, list[float]]:
    """Per-item 0/1 scores of every accuracy metric in a results.json, by metric name."""
    doc = json.loads(path.read_text())
    out = {}
    for r in doc["records"]:
        samples = r.get("samples") or []
        if (r.get("info") or {}).get("task") and samples and all(x in (0, 1) for x in samples):
            out[r["metric"]] = [float(x) for x in samples]
    return out


def real_items_drop(base_path: Path, cand_path: Path, rng: np.random.Generator, trials: int, alpha: float) -> None:
    """A 5-point drop injected into a real candidate's per-item scores (real discordance with the
    real reference), through the McNemar rule; the share of trials that say "regressed"."""
    base, cand = item_scores(base_path), item_scores(cand_path)
    for metric in sorted(set(base) & set(cand)):
        b, c = np.asarray(base[metric]), np.asarray(cand[metric])
        if len(b) != len(c):
            continue
        drop = max(1, round(0.05 * len(c)))
        correct = np.flatnonzero(c == 1)
        if len(correct) < drop:
            continue
        detected = 0
        for _ in range(trials):
            worse = c.copy()
            worse[rng.choice(correct, drop, replace=False)] = 0
            detected += compare_paired_items(metric, list(b), list(worse), tau_points=0.01, alpha=alpha).verdict == (
                "regressed"
            )
        print(f"  {metric}: {len(b)} real items, {int(np.sum(b != c))} discordant, {drop} items (5 points) "
              f"dropped: detected {100 * detected / trials:.0f} %")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sessions", type=Path)
    parser.add_argument("--k", type=int, nargs="+", default=[3, 5, 9])
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--draws", type=int, default=20, help="random baseline choices per held-out session")
    parser.add_argument("--items", type=Path, nargs=2, metavar=("REFERENCE", "CANDIDATE"),
                        help="two results.json with per-item accuracy scores (a 5-point drop is injected)")  # fmt: skip
    parser.add_argument(
        "--confirm",
        type=int,
        default=1,
        help="sessions a figure that did not pass is judged on (--slm-confirm: 2 or more)",
    )
    parser.add_argument(
        "--adjacent",
        action="store_true",
        help="with --confirm: the confirming sessions are the ones recorded right after",
    )
    parser.add_argument("--own-spread", action="store_true",
                        help="each figure with its own spread only (the rule before pooled spreads)")  # fmt: skip
    args = parser.parse_args()
    data = json.loads(args.sessions.read_text())
    sessions = data["sessions"]
    rng = np.random.default_rng(0)
    print(f"{len(sessions)} recorded sessions ({args.sessions}); selection {data.get('selection')}")
    for k in args.k:
        if k >= len(sessions):
            continue
        for label, slow in (("A/A", 1.0), ("10 % slower", 1.10)):
            per_metric, mdes, alarms, excluded, family = replay(
                sessions,
                k,
                args.alpha,
                slow,
                rng,
                args.draws,
                pooled=not args.own_spread,
                confirm=args.confirm,
                adjacent=args.adjacent,
            )
            total: Counter[str] = sum(per_metric.values(), Counter())
            n = sum(total.values()) - total["(confirmed)"]
            print(f"\nK = {k} saved sessions, {label}: {family} gated metrics, alpha {args.alpha}/{family}, "
                  f"{n} comparisons ({excluded} left out as invalid)")  # fmt: skip
            if label == "A/A":
                false = total["regressed"] + total["improved"]
                print(f"  per gate: {100 * false / max(n, 1):.2f} % false alarms ({false}/{n}); "
                      f"family-wise: {100 * np.mean(alarms):.1f} % of sessions; "
                      f"inconclusive {100 * total['inconclusive'] / max(n, 1):.1f} %")  # fmt: skip
            for key, counts in sorted(per_metric.items()):
                m = sum(counts.values()) - counts["(confirmed)"]
                shown = ", ".join(f"{v} {100 * counts[v] / max(m, 1):.0f} %" for v in
                                  ("pass", "inconclusive", "regressed", "improved", "invalid (machine)",
                                   "(confirmed)")
                                  if counts[v])  # fmt: skip
                mde = f"; detectable change {100 * float(np.median(mdes[key])):.1f} %" if mdes[key] else ""
                print(f"  {key}: {shown}{mde}")
    machine_tracking(sessions)
    print(f"\naccuracy, 1,000 paired items, 5-point drop, alpha 0.05/30: detected "
          f"{100 * accuracy_drop(rng, 300, args.alpha / 30):.0f} %")  # fmt: skip
    if args.items:
        print(f"\naccuracy on real items ({args.items[0]} vs {args.items[1]}), alpha 0.05/30:")
        real_items_drop(*args.items, rng, 300, args.alpha / 30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
