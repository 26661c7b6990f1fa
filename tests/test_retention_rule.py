"""The retention floor decision: quality only, both sides' uncertainty, three verdicts."""

from __future__ import annotations

import pytest

from pytest_slm.accuracy.retention import decide, is_quality, paired_documents, paired_items
from pytest_slm.record import Metric


def test_many_items_clearly_above_the_floor_pass() -> None:
    ref = [1.0] * 900 + [0.0] * 100
    r = paired_items("acc", ref, list(ref), floor=0.95)
    assert r.verdict == "passes" and r.retention == 1.0 and r.low is not None and r.low > 0.95


def test_many_items_clearly_below_the_floor_fail() -> None:
    ref = [1.0] * 1000
    cur = [1.0] * 800 + [0.0] * 200
    r = paired_items("acc", ref, cur, floor=0.95)
    assert r.verdict == "fails" and r.high is not None and r.high < 0.95
    assert "200 items lost, 0 gained of 1000" in r.note


def test_few_items_are_inconclusive_with_the_detectable_shortfall() -> None:
    ref = [1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0]
    cur = [1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0]
    r = paired_items("acc", ref, cur, floor=0.95)
    assert r.verdict == "inconclusive" and r.detectable_shortfall is not None and r.detectable_shortfall > 0.05


def test_documents_bootstrap_for_perplexity() -> None:
    ref = [[-100.0, 50.0]] * 20
    worse = [[-130.0, 50.0]] * 20  # every document less likely: perplexity up
    r = paired_documents("word_perplexity", ref, worse, floor=0.95)
    assert r.verdict == "fails" and r.retention < 0.95
    same = paired_documents("word_perplexity", ref, list(ref), floor=0.95)
    assert same.verdict == "passes" and same.retention == pytest.approx(1.0)


def test_speed_is_not_quality_and_the_chooser_picks_the_test() -> None:
    speed = Metric("slm_mc.items_per_s", 2.0, "item/s", True, info={"kind": "speed"})
    acc = Metric("slm_mc.acc", 0.5, "1", True, samples=(1.0, 0.0) * 50, info={"kind": "quality"})
    assert not is_quality(speed) and is_quality(acc)
    assert decide(acc, acc, 0.95).method.startswith("paired items")
    ppl = Metric("p", 10.0, "1", False, info={"kind": "quality"})
    unbounded = decide(ppl, Metric("p", 11.0, "1", False), 0.95)
    assert unbounded.method == "point estimate" and unbounded.verdict == "inconclusive"  # never fails blind
    with_se = decide(Metric("p", 10.0, "1", False, stderr=0.1), Metric("p", 11.0, "1", False, stderr=0.1), 0.95)
    assert with_se.method.startswith("normal interval") and with_se.verdict == "fails"
    close = decide(Metric("p", 10.0, "1", False, stderr=1.0), Metric("p", 10.2, "1", False, stderr=1.0), 0.95)
    assert close.verdict == "inconclusive" and close.low is not None and close.low < 0.95 < close.high
