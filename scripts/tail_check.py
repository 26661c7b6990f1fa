"""How heavy are the tails of session-to-session changes? The figure behind ``MAX_DF``.

Reads A/A sets recorded by ``scripts/aa_sessions.py`` (the same code on the same machine, one
session after the other) and, per set and per median latency or throughput figure (metric names
ending ``_p50_s`` or ``tokens_per_s``), takes every session's log figure, its deviation from that
figure's median over the set's sessions, and divides it by the figure's robust standard deviation
(1.4826 x the median absolute deviation). Sessions a run judged invalid are left out as
``gate_proof.py`` leaves them out (an invalid verdict from the machine-shift check alone counts as
measured). It prints, per set and over all of them, how many standardized deviations lie beyond 3,
and the degrees of freedom of a Student t fitted to them (location 0).

A normal law puts 0.27 % beyond 3 known standard deviations; with a robust sd estimated from 6 to
11 sessions a figure, even normal sessions land there more often. The script therefore also
simulates normal sessions of the very same counts (seeded) and prints their share beyond 3, the
chance of seeing at least the recorded count, and their fitted t's median degrees of freedom.

The default sets are the three the t's 8-df cap was chosen on (``aa_sessions_cpu.json``,
``aa_sessions_cpu_probe.json``, ``aa_sessions_cpu_final.json``); ``aa_sessions_cpu_pooled.json``
was recorded after that choice. Usage:
    python scripts/tail_check.py [SET.json ...] [--draws 2000] [--fit-draws 200] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gate_proof import measured_validly

DATA = Path(__file__).resolve().parent / "data"
#: the three A/A sets recorded before ``MAX_DF`` was chosen
DEFAULT_SETS = [DATA / "aa_sessions_cpu.json", DATA / "aa_sessions_cpu_probe.json", DATA / "aa_sessions_cpu_final.json"]
#: 1.4826 x MAD estimates a normal law's standard deviation
MAD_TO_SD = 1.4826
BEYOND_SD = 3.0
#: share of a normal law beyond 3 known standard deviations (two-sided)
NORMAL_SHARE = float(2 * stats.norm.sf(BEYOND_SD))


def is_median_figure(key: str) -> bool:
    """Whether a recorded figure (``test::metric``) is a median latency or a throughput."""
    metric = key.split("::")[-1]
    return metric.endswith("_p50_s") or metric.endswith("tokens_per_s")


def set_logs(path: Path) -> dict[str, np.ndarray]:
    """Per median figure of one recorded set, the log figures of its validly measured sessions."""
    sessions = json.loads(path.read_text())["sessions"]
    keys = sorted({key for s in sessions for key in s["figures"] if is_median_figure(key)})
    return {
        key: np.log([s["figures"][key]["value"] for s in sessions
                     if key in s["figures"] and measured_validly(s["figures"][key])])
        for key in keys
    }  # fmt: skip


def standardized(logs: np.ndarray) -> np.ndarray:
    """Each value's deviation from the median, in robust standard deviations (1.4826 x MAD)."""
    centre = np.median(logs, axis=-1, keepdims=True)
    mad = np.median(np.abs(logs - centre), axis=-1, keepdims=True)
    return np.asarray((logs - centre) / (MAD_TO_SD * mad))


def shown_df(df: float) -> str:
    """Degrees of freedom as printed (a fit with no heavy tail runs off to huge values)."""
    return f"{df:.1f}" if df < 100 else "> 100"


def t_df(z: np.ndarray) -> float:
    """Degrees of freedom of a Student t fitted (maximum likelihood, location 0) to ``z``."""
    df, _, _ = stats.t.fit(z, floc=0)
    return float(df)


@dataclass(frozen=True)
class Tails:
    """Standardized session deviations of some figures, and how heavy their tails are."""

    deviations: int
    beyond: int  #: how many lie beyond :data:`BEYOND_SD` robust sd
    df: float  #: a fitted Student t's degrees of freedom

    @property
    def share(self) -> float:
        """The share of deviations beyond :data:`BEYOND_SD` robust sd."""
        return self.beyond / self.deviations


@dataclass(frozen=True)
class NormalReference:
    """The same figures for normal sessions of the same counts per figure (simulated)."""

    share: float  #: mean share beyond :data:`BEYOND_SD` robust sd
    p_at_least: float  #: chance of at least the recorded count beyond
    df: float  #: median fitted degrees of freedom


def tails(groups: list[np.ndarray]) -> Tails:
    """Tails of the deviations of ``groups`` (one array of log figures per set and figure)."""
    z = np.concatenate([standardized(g) for g in groups])
    return Tails(len(z), int(np.sum(np.abs(z) > BEYOND_SD)), t_df(z))


def normal_reference(sizes: list[int], beyond: int, draws: int, fit_draws: int, seed: int) -> NormalReference:
    """Simulate ``draws`` times normal sessions with ``sizes`` sessions per figure (a t fitted to
    the first ``fit_draws`` of them: the fit is the slow part)."""
    rng = np.random.default_rng(seed)
    z = np.concatenate([standardized(rng.standard_normal((draws, n))) for n in sizes], axis=1)
    counts = np.sum(np.abs(z) > BEYOND_SD, axis=1)
    dfs = [t_df(row) for row in z[: max(1, min(draws, fit_draws))]]
    return NormalReference(float(np.mean(counts)) / z.shape[1], float(np.mean(counts >= beyond)), float(np.median(dfs)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sets", type=Path, nargs="*", default=DEFAULT_SETS, help="recorded A/A sets (JSON)")
    parser.add_argument("--draws", type=int, default=2000, help="simulated normal sets for the reference")
    parser.add_argument("--fit-draws", type=int, default=200, help="simulated sets a t is fitted to")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    groups: list[np.ndarray] = []
    for path in args.sets:
        logs = list(set_logs(path).values())
        t = tails(logs)
        print(
            f"{path.name}: {len(logs)} figures, {t.deviations} deviations, {t.beyond} beyond {BEYOND_SD:g} robust sd "
            f"({100 * t.share:.1f} %), t fit {shown_df(t.df)} df"
        )
        groups += logs
    t = tails(groups)
    ref = normal_reference([len(g) for g in groups], t.beyond, args.draws, args.fit_draws, args.seed)
    print(
        f"all {len(args.sets)} sets: {t.deviations} deviations of median latencies and throughput, {t.beyond} beyond "
        f"{BEYOND_SD:g} robust sd ({100 * t.share:.1f} %), t fit {shown_df(t.df)} df"
    )
    print(
        f"a normal law: {100 * NORMAL_SHARE:.2f} % beyond {BEYOND_SD:g} known sd; normal sessions of these counts "
        f"({args.draws} simulated sets): {100 * ref.share:.1f} % beyond {BEYOND_SD:g} robust sd, {t.beyond} or more "
        f"in {100 * ref.p_at_least:.1f} % of sets, t fit median {shown_df(ref.df)} df"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
