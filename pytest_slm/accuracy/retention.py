"""Retention of a quantized precision against bf16, decided with the uncertainty of both. Pytest-free.

Retention is quantized ÷ bf16 for a score that is better high (accuracy, exact match) and
bf16 ÷ quantized for one that is better low (perplexity), on the same items. It applies to
*quality* metrics only: a speed (items/s) has its own ratios (``*_over_bf16``) and thresholds.

The floor decision is a non-inferiority test at level ``alpha``:

- "fails" when retention is below the floor with confidence (the upper bound of its one-sided
  interval is under the floor);
- "passes" when it is above the floor with confidence (the lower bound is over it);
- "inconclusive" otherwise, with the smallest shortfall these items could have detected.

Per-item 0/1 scores (accuracy) give a paired test on ``q_i − floor · r_i`` (the McNemar
discordant counts are reported with it); per-document log-likelihoods (perplexity) give a
paired bootstrap over documents; without either, both runs' standard errors give a normal
interval; with none of these the point estimate is recorded and the verdict is "inconclusive".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from pytest_slm.record import Metric

ALPHA = 0.05
POWER_Z = 0.8416  # 80 % power


@dataclass(frozen=True)
class Retention:
    """The retention of one metric and the floor verdict."""

    metric: str
    retention: float
    floor: float
    verdict: str  # "passes" | "fails" | "inconclusive"
    low: float | None  # one-sided (1 - alpha) bounds of the retention
    high: float | None
    method: str
    note: str = ""
    detectable_shortfall: float | None = None

    def message(self, precision: str, current: float, reference: float, reference_name: str = "bf16") -> str:
        bounds = "" if self.low is None else f" [{self.low:.3f}, {self.high:.3f}]"
        text = (
            f"{self.metric}: {precision} {current:.4g} vs {reference_name} {reference:.4g} "
            f"-> retention {self.retention:.3f}"
            f"{bounds} {self.verdict} the floor {self.floor:g} ({self.method})"
        )
        return text + (f"; {self.note}" if self.note else "")


def _verdict(low: float, high: float, floor: float) -> str:
    if high < floor:
        return "fails"
    if low >= floor:
        return "passes"
    return "inconclusive"


def paired_items(
    metric: str, reference: Sequence[float], current: Sequence[float], floor: float, alpha: float = ALPHA
) -> Retention:
    """Accuracy-like 0/1 scores on the same items (higher is better)."""
    from scipy import stats

    if len(reference) != len(current) or not reference:
        raise ValueError(
            f"{metric}: retention needs the same items (bf16 has {len(reference)}, current {len(current)})"
        )
    n = len(reference)
    r_mean, q_mean = sum(reference) / n, sum(current) / n
    if r_mean == 0:
        return Retention(metric, math.nan, floor, "inconclusive", None, None, "paired items",
                         "bf16 scored 0: retention is undefined")  # fmt: skip
    retention = q_mean / r_mean
    d = [q - floor * r for q, r in zip(current, reference, strict=True)]
    mean_d = sum(d) / n
    sd = math.sqrt(sum((x - mean_d) ** 2 for x in d) / (n - 1)) if n > 1 else math.inf
    se = sd / math.sqrt(n)
    lost = sum(1 for q, r in zip(current, reference, strict=True) if r == 1 and q == 0)
    gained = sum(1 for q, r in zip(current, reference, strict=True) if r == 0 and q == 1)
    note = f"{lost} items lost, {gained} gained of {n}"
    if se == 0:
        verdict = "passes" if mean_d >= 0 else "fails"
        return Retention(metric, retention, floor, verdict, retention, retention, "paired items (no variance)", note,
                         0.0)  # fmt: skip
    z = float(stats.norm.ppf(1 - alpha))
    # bounds on q − f·r, turned into bounds on retention: (mean_d ± z·se) / r_mean + f
    low, high = (mean_d - z * se) / r_mean + floor, (mean_d + z * se) / r_mean + floor
    shortfall = (z + POWER_Z) * se / r_mean
    return Retention(metric, retention, floor, _verdict(low, high, floor), low, high,
                     "paired items, one-sided Wald on q - floor*r", note, shortfall)  # fmt: skip


def paired_documents(
    metric: str,
    reference: Sequence[Sequence[float]],
    current: Sequence[Sequence[float]],
    floor: float,
    alpha: float = ALPHA,
    iterations: int = 2000,
) -> Retention:
    """Perplexity-like figures from per-document (log-likelihood, weight) pairs on the same
    documents (lower perplexity is better): retention bf16 ÷ quantized, paired bootstrap."""
    import numpy as np

    if len(reference) != len(current) or not reference:
        raise ValueError(f"{metric}: retention needs the same documents ({len(reference)} vs {len(current)})")
    ref = np.asarray(reference, dtype=float)
    cur = np.asarray(current, dtype=float)

    def ppl(rows: np.ndarray) -> np.ndarray:
        return np.asarray(np.exp(-rows[..., 0].sum(axis=-1) / rows[..., 1].sum(axis=-1)))

    point = float(ppl(ref) / ppl(cur))
    rng = np.random.default_rng(0)
    idx = rng.integers(0, len(ref), (iterations, len(ref)))
    boots = ppl(ref[idx]) / ppl(cur[idx])
    low, high = (float(x) for x in np.quantile(boots, [alpha, 1 - alpha]))
    spread = (high - low) / 2
    return Retention(metric, point, floor, _verdict(low, high, floor), low, high,
                     f"paired bootstrap over {len(ref)} documents", "", spread * (1 + POWER_Z / 1.645))  # fmt: skip


def from_stderr(
    metric: str,
    reference: float,
    reference_se: float | None,
    current: float,
    current_se: float | None,
    floor: float,
    *,
    higher_is_better: bool,
    alpha: float = ALPHA,
) -> Retention:
    """No per-item data: a normal interval on the log ratio from both standard errors (delta
    method, the two runs taken as independent). Without standard errors nothing bounds the
    point estimate, and the verdict is "inconclusive" (the point is still recorded)."""
    from scipy import stats

    retention = current / reference if higher_is_better else reference / current
    if reference_se is None or current_se is None:
        return Retention(metric, retention, floor, "inconclusive", None, None, "point estimate",
                         "no per-item scores, per-document data or standard errors to bound it")  # fmt: skip
    se = math.sqrt((reference_se / reference) ** 2 + (current_se / current) ** 2)
    z = float(stats.norm.ppf(1 - alpha))
    low, high = retention * math.exp(-z * se), retention * math.exp(z * se)
    shortfall = retention * math.expm1((z + POWER_Z) * se)
    method = "normal interval from both standard errors"
    return Retention(metric, retention, floor, _verdict(low, high, floor), low, high, method, "", shortfall)


def is_quality(metric: Metric) -> bool:
    """Whether retention applies: an accuracy, exact-match or perplexity figure, not a speed."""
    return metric.info.get("kind") == "quality"


def decide(reference: Metric, current: Metric, floor: float, alpha: float = ALPHA) -> Retention:
    """The retention of ``current`` against the bf16 ``reference`` of the same metric, with the
    best test the two carry (per-item scores, per-document log-likelihoods, else the point)."""
    name = current.name
    ref_items, cur_items = list(reference.samples), list(current.samples)
    binary = all(x in (0.0, 1.0) for x in [*ref_items, *cur_items])
    if ref_items and len(ref_items) == len(cur_items) and binary and current.higher_is_better:
        return paired_items(name, ref_items, cur_items, floor, alpha)
    ref_docs, cur_docs = reference.info.get("per_doc"), current.info.get("per_doc")
    if ref_docs and cur_docs and len(ref_docs) == len(cur_docs) and not current.higher_is_better:
        return paired_documents(name, ref_docs, cur_docs, floor, alpha)
    return from_stderr(name, reference.value, reference.stderr, current.value, current.stderr, floor,
                       higher_is_better=current.higher_is_better, alpha=alpha)  # fmt: skip
