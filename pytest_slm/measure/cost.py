"""The cost of an answer: seconds, joules and money per correct answer, and money per million output tokens.

Pytest-free. A correct answer is an item scored 1 by the task's accuracy metric (``acc`` or
``exact_match``, per item, as lm-eval scored it). Money figures need a price per hour of the
machine (``--slm-price-per-hour``, in USD); figures are per answer of the accuracy run as run
(few-shot context included).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pytest_slm.record import Metric

#: lm-eval metrics whose per-item scores say right (1) or wrong (0), in order of preference
CORRECTNESS_METRICS = ("acc", "exact_match")
SECONDS_PER_HOUR = 3600.0


@dataclass(frozen=True)
class Answers:
    """How many items a task run got right, by which metric."""

    correct: int
    items: int
    metric: str


def correct_answers(metrics: Sequence[Metric]) -> Answers | None:
    """Correct items of a task result, from the first right/wrong metric with per-item scores; None if none has them."""
    for wanted in CORRECTNESS_METRICS:
        for m in metrics:
            samples = m.samples
            if m.info.get("metric") == wanted and samples and all(s in (0.0, 1.0) for s in samples):
                return Answers(int(sum(samples)), len(samples), m.name)
    return None


def answer_cost_metrics(answers: Answers, wall_s: float, price_per_hour: float | None) -> list[Metric]:
    """Seconds (and, with a price, USD) per correct answer of one accuracy run of ``wall_s`` seconds."""
    if answers.correct <= 0:
        raise ValueError(f"no correct answer among {answers.items} items ({answers.metric}): the cost is unbounded")
    info = {
        "correct": answers.correct,
        "items": answers.items,
        "correctness_metric": answers.metric,
        "wall_s": wall_s,
        "price_per_hour_usd": price_per_hour,
    }
    s_per = wall_s / answers.correct
    out = [Metric("s_per_correct_answer", s_per, "s/answer", False, n=answers.items, info=info)]
    if price_per_hour is not None:
        out.append(
            Metric("usd_per_correct_answer", price_per_hour / SECONDS_PER_HOUR * s_per, "USD/answer", False, info=info)
        )
    return out


def usd_per_million_output_tokens(
    tokens_per_s: float, price_per_hour: float, samples: Sequence[float] = (), **info: object
) -> Metric:
    """The machine's price over the time a million output tokens take at ``tokens_per_s``."""
    if tokens_per_s <= 0:
        raise ValueError(f"output tokens per second must be positive, got {tokens_per_s}")

    def usd(tps: float) -> float:
        return price_per_hour / SECONDS_PER_HOUR * 1e6 / tps

    return Metric(
        "usd_per_million_output_tokens",
        usd(tokens_per_s),
        "USD/Mtoken",
        False,
        n=len(samples) or None,
        samples=tuple(usd(s) for s in samples if s > 0),
        info={"price_per_hour_usd": price_per_hour, "output_tokens_per_s": tokens_per_s, **info},
    )


def energy_per_correct_answer(
    energy_j: float, dynamic_energy_j: float, answers: Answers, **info: object
) -> list[Metric]:
    """Joules per correct answer over an energy window holding ``answers`` (summed over its repeats)."""
    if answers.correct <= 0:
        raise ValueError(f"no correct answer among {answers.items} items ({answers.metric}): the cost is unbounded")
    facts = {"correct": answers.correct, "items": answers.items, "correctness_metric": answers.metric, **info}
    return [
        Metric("j_per_correct_answer", energy_j / answers.correct, "J/answer", False, info=facts),
        Metric("dynamic_j_per_correct_answer", dynamic_energy_j / answers.correct, "J/answer", False, info=facts),
    ]
