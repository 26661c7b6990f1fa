"""The smallest accuracy drop the gate can call, as the terminal states it for each task of a run."""

from __future__ import annotations

import pytest
from scipy import stats

from pytest_slm.accuracy.power import detectability, items_of, smallest_called_loss
from pytest_slm.compare.rules import compare_paired_items
from tests.conftest import REPO, SlmPytester


@pytest.mark.parametrize("alpha", [0.5, 0.05, 0.05 / 20, 0.01, 1e-4])
def test_the_smallest_called_loss_is_where_the_exact_test_first_rejects(alpha: float) -> None:
    k = smallest_called_loss(alpha)
    # scipy's exact binomial test, independent of the formula: k lost of k discordant rejects, k - 1 does not
    assert stats.binomtest(k, k, 0.5, alternative="greater").pvalue <= alpha
    assert k == 1 or stats.binomtest(k - 1, k - 1, 0.5, alternative="greater").pvalue > alpha


@pytest.mark.parametrize("alpha", [0.05, 0.05 / 20])
def test_the_gates_own_rule_calls_that_loss_and_not_one_item_less(alpha: float) -> None:
    k = smallest_called_loss(alpha)
    n = 40
    baseline = [1.0] * n
    lost = [0.0] * k + [1.0] * (n - k)
    one_less = [0.0] * (k - 1) + [1.0] * (n - k + 1)
    assert compare_paired_items("slm_mc.acc", baseline, lost, alpha=alpha).verdict == "regressed"
    assert compare_paired_items("slm_mc.acc", baseline, one_less, alpha=alpha).verdict != "regressed"


def test_items_of_the_shipped_tasks_under_a_limit() -> None:
    assert items_of("slm_mc", None) == 40
    assert items_of("slm_mc", 10) == 10 and items_of("slm_mc", 0.5) == 20 and items_of("slm_mc", 500) == 40
    assert items_of("gsm8k_local", None) == 100 and items_of("gsm8k_local", 50) == 50
    assert items_of("mmlu", None) is None  # a hub task: known once it loads


def test_the_line_says_points_or_that_no_drop_can_be_called() -> None:
    assert "5 items lost and none gained (12.5 points; per-figure level 0.05)" in detectability("slm_mc", 40, 0.05)
    assert "4 items can never show a regression" in detectability("tiny", 4, 0.05)
    assert "known once it loads" in detectability("mmlu", None, 0.05)


def test_the_run_states_it_for_each_task_it_collected(slm_pytester: SlmPytester) -> None:
    slm_pytester.pytester.makepyfile(test_accuracy=(REPO / "benches" / "test_accuracy.py").read_text())
    result = slm_pytester.run("--collect-only", "-q", "--slm-accuracy-tasks", "slm_mc", "gsm8k_local",
                              "--slm-accuracy-limit", "20")  # fmt: skip
    out = result.stdout.str()
    assert "slm: accuracy slm_mc: 20 items: the smallest drop the gate can call is 5 items lost" in out, out
    assert "slm: accuracy gsm8k_local: 20 items:" in out
