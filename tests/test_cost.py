"""Cost of an answer: the pure figures, and benches/test_cost.py on the fake engine (lm-eval's own
scoring of the shipped multiple-choice set, a fake powercap tree for the energy window)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_slm.measure.cost import (
    Answers,
    answer_cost_metrics,
    correct_answers,
    energy_per_correct_answer,
    usd_per_million_output_tokens,
)
from pytest_slm.record import Metric
from tests.test_energy import make_zone

BENCH = (Path(__file__).resolve().parents[1] / "benches" / "test_cost.py").read_text()


def item_metric(name: str, metric: str, samples: tuple[float, ...]) -> Metric:
    return Metric(name, sum(samples) / len(samples), "1", True, samples=samples, info={"metric": metric})


def test_correct_answers_prefer_acc_then_exact_match_with_per_item_scores() -> None:
    metrics = [
        item_metric("t.acc_norm", "acc_norm", (1, 1, 1)),
        item_metric("t.exact_match.flexible", "exact_match", (1, 0, 1, 1)),
        item_metric("t.acc", "acc", (1, 0, 0, 1)),
    ]
    assert correct_answers(metrics) == Answers(2, 4, "t.acc")
    assert correct_answers(metrics[1:2]) == Answers(3, 4, "t.exact_match.flexible")
    assert correct_answers([item_metric("t.word_perplexity", "word_perplexity", (3.2, 4.1))]) is None


def test_answer_costs_with_and_without_a_price() -> None:
    answers = Answers(correct=5, items=10, metric="t.acc")
    (s,) = answer_cost_metrics(answers, wall_s=20.0, price_per_hour=None)
    assert (s.name, s.value, s.unit, s.higher_is_better) == ("s_per_correct_answer", 4.0, "s/answer", False)
    _, usd = answer_cost_metrics(answers, wall_s=20.0, price_per_hour=3.6)
    assert usd.name == "usd_per_correct_answer" and usd.value == pytest.approx(0.004) and usd.unit == "USD/answer"
    with pytest.raises(ValueError, match="unbounded"):
        answer_cost_metrics(Answers(0, 10, "t.acc"), 20.0, None)


def test_usd_per_million_tokens_and_joules_per_answer() -> None:
    m = usd_per_million_output_tokens(1000.0, 3.6, samples=(500.0, 1000.0))
    assert m.value == pytest.approx(1.0) and m.samples == pytest.approx((2.0, 1.0))  # 1000 s at $3.6/h
    j, dyn = energy_per_correct_answer(50.0, 20.0, Answers(10, 40, "t.acc"), repeats=2)
    assert (j.name, j.value, j.unit) == ("j_per_correct_answer", 5.0, "J/answer")
    assert dyn.value == 2.0 and j.info["repeats"] == 2


ARGS = ("--slm-accuracy-tasks", "slm_mc", "--slm-accuracy-limit", "8", "--slm-num-fewshot", "0")


def test_cost_bench_on_the_fake_engine(slm_pytester, tmp_path: Path) -> None:
    make_zone(tmp_path / "intel-rapl:0", "package-0", 5, max_range=1 << 40)
    slm_pytester.pytester.makepyfile(BENCH)
    result = slm_pytester.run(
        *ARGS,
        "--slm-price-per-hour",
        "3.6",
        "--slm-power-meter",
        "rapl",
        "--slm-powercap-root",
        str(tmp_path),
        "--slm-energy-window-s",
        "0.01",
        "--slm-energy-idle-s",
        "0.01",
        "--slm-energy-settle-s",
        "0",
        subprocess=True,
    )
    result.assert_outcomes(passed=3)
    recs = {r["metric"]: r for r in slm_pytester.results()["records"]}
    s = recs["s_per_correct_answer"]
    correct = s["info"]["correct"]
    assert s["info"]["items"] == 8 and 0 < correct <= 8 and s["info"]["correctness_metric"] == "slm_mc.acc"
    assert s["value"] == pytest.approx(s["info"]["wall_s"] / correct)
    assert recs["usd_per_correct_answer"]["value"] == pytest.approx(s["value"] * 3.6 / 3600)
    usd = recs["usd_per_million_output_tokens"]
    assert usd["unit"] == "USD/Mtoken"
    # priced at the throughput test's own offline workload (its request count, not the latency batch)
    assert usd["info"]["workload"]["concurrency"] == 32 != 8
    # the fake counter does not move: zero joules, honestly reported, per answer counted over the repeats
    j = recs["j_per_correct_answer"]
    assert j["value"] == 0.0 and j["info"]["correct"] % correct == 0 and j["info"]["repeats"] >= 1


def test_without_price_or_meter_the_money_and_energy_tests_skip_with_reasons(slm_pytester, tmp_path: Path) -> None:
    slm_pytester.pytester.makepyfile(BENCH)
    result = slm_pytester.run(
        *ARGS, "--slm-power-meter", "rapl", "--slm-powercap-root", str(tmp_path / "none"), subprocess=True
    )
    result.assert_outcomes(passed=1, skipped=2)
    reasons = {s["reason"] for s in slm_pytester.results()["skipped"]}
    assert reasons == {
        "no --slm-price-per-hour given: money figures need the machine's price",
        f"no RAPL powercap interface at {tmp_path / 'none'}",
    }
    assert {r["metric"] for r in slm_pytester.results()["records"]} == {"s_per_correct_answer"}
