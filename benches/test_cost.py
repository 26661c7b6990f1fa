"""The cost of an answer per model × precision: seconds, joules and (with ``--slm-price-per-hour``, in USD)
money per correct answer of each accuracy task, and money per million output tokens.

Seconds per correct answer divide the wall time of the accuracy run the accuracy tests already made
(few-shot context included) by its correct items. Joules need a power meter: the task is evaluated
again inside an energy window; where no meter exists the test is skipped with the reason.
"""

from __future__ import annotations

import pytest

from pytest_slm.accuracy.evaluate import TaskUnavailable
from pytest_slm.energy.method import measure
from pytest_slm.measure.cost import (
    Answers,
    answer_cost_metrics,
    correct_answers,
    energy_per_correct_answer,
    usd_per_million_output_tokens,
)
from pytest_slm.measure.throughput import throughput_metrics


def _answers(result, task):
    answers = correct_answers(result.metrics)
    if answers is None:
        pytest.skip(f"task {task} has no per-item right/wrong scores (acc or exact_match): nothing to count")
    if answers.correct == 0:
        pytest.skip(f"no correct answer on {task} ({answers.items} items): the cost per correct answer is unbounded")
    return answers


def _run(slm_accuracy, task):
    try:
        return slm_accuracy.run(task)
    except TaskUnavailable as exc:
        pytest.skip(str(exc))


def test_seconds_per_correct_answer(slm_accuracy, slm_task, slm):
    """Wall seconds of the task's accuracy run ÷ its correct items; with a price, USD per correct answer."""
    result = _run(slm_accuracy, slm_task)
    answers = _answers(result, slm_task)
    slm.extend(answer_cost_metrics(answers, slm_accuracy.wall_s(slm_task), slm.settings.price_per_hour))


def test_usd_per_million_output_tokens(slm_runs, slm):
    """The machine's price (``--slm-price-per-hour``) over the time a million output tokens take at the
    offline batch throughput the throughput test measures."""
    price = slm.settings.price_per_hour
    if price is None:
        pytest.skip("no --slm-price-per-hour given: money figures need the machine's price")
    tps = next(
        m for m in throughput_metrics(slm_runs.offline(slm.offline_workload())) if m.name == "output_tokens_per_s"
    )
    slm.extend([usd_per_million_output_tokens(tps.value, price, tps.samples, workload=tps.info.get("workload"))])


def test_energy_per_correct_answer(slm_accuracy, power_meter, slm_task, slm):
    """Joules (total and above idle) per correct answer: the task evaluated again inside an energy window."""
    _run(slm_accuracy, slm_task)  # a task that cannot run skips here, before the meter window
    counted = []

    def one_pass():
        result = slm_accuracy.evaluate_again(slm_task)
        answers = _answers(result, slm_task)
        counted.append(answers)
        return answers.correct, answers.items

    s = slm.settings
    window = measure(
        power_meter,
        one_pass,
        idle_s=s.energy_idle_s,
        settle_s=s.energy_settle_s,
        min_window_s=s.energy_window_s,
        min_repeats=1,
    )
    total = Answers(sum(a.correct for a in counted), sum(a.items for a in counted), counted[0].metric)
    slm.extend(
        energy_per_correct_answer(
            window.energy_j,
            window.dynamic_energy_j,
            total,
            repeats=window.repeats,
            window_s=window.window_s,
            idle_power_w=window.idle_power_w,
            meter=power_meter.describe(),
        )
    )
