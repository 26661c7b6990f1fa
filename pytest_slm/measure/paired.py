"""Paired ratios (one path ÷ another, measured back to back) and whether they have settled a limit.

The harness-overhead bench times the plugin's path and a raw vLLM loop in alternating pairs. A pair's
ratio scatters by a few per cent on a shared CPU, so a handful of pairs can land either side of a
limit that sits close to 1 by chance. The bench gives a ratio more pairs while its 95 % interval still
holds the limit (up to a cap), then applies the limit to the same figure as before: more data where
the answer is close, never a looser limit.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence


def ratio_interval(ratios: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """The ``confidence`` interval of the geometric-mean ratio: a t interval on log ratios
    ((0, inf) below two ratios or with a non-positive one)."""
    if len(ratios) < 2 or min(ratios) <= 0:
        return 0.0, math.inf
    from scipy import stats

    logs = [math.log(r) for r in ratios]
    half = float(stats.t.ppf((1 + confidence) / 2, len(logs) - 1)) * statistics.stdev(logs) / math.sqrt(len(logs))
    mean = statistics.fmean(logs)
    return math.exp(mean - half), math.exp(mean + half)


def holds(ratios: Sequence[float], limit: float, confidence: float = 0.95) -> bool:
    """Whether ``limit`` lies inside the ratios' interval: they have not yet said on which side it is."""
    low, high = ratio_interval(ratios, confidence)
    return low <= limit <= high


def need_more(ratios: Sequence[float], limit: float, min_pairs: int, max_pairs: int) -> bool:
    """Whether to measure another pair: below ``min_pairs``, or below ``max_pairs`` while the ratios'
    interval still holds ``limit``."""
    return len(ratios) < min_pairs or (len(ratios) < max_pairs and holds(ratios, limit))
