"""Tests a run has to ask for: the harness's self-checks (``slm_self_check``) and the in-process serving
levels (``slm_serving``) are left out of the quick default, each with a line that says why and what runs
them; the option, a serving level set from any source, or the full profile brings them back."""

from __future__ import annotations

from dataclasses import replace

import pytest

from pytest_slm.parametrize import ON_REQUEST_MARKERS, not_requested
from pytest_slm.settings import Settings
from tests.conftest import REPO, SlmPytester

SELF_CHECKS = {"test_saturation_curve", "test_harness_overhead"}
SERVING = {"test_serving", "test_saturation_point"}


def collected(slm_pytester: SlmPytester, *args: str) -> tuple[set[str], str]:
    """(test functions collected from the shipped throughput and serving benches, the output)."""
    for name in ("test_throughput.py", "test_serving.py"):
        slm_pytester.pytester.makepyfile(**{name[:-3]: (REPO / "benches" / name).read_text()})
    result = slm_pytester.run("--collect-only", "-q", *args)
    assert result.ret == 0, result.stdout.str()
    names = {line.split("::")[1].split("[")[0] for line in result.outlines if "::" in line}
    return names, result.stdout.str()


def test_the_quick_default_leaves_self_checks_and_serving_levels_out_and_says_why(slm_pytester: SlmPytester) -> None:
    names, out = collected(slm_pytester)
    assert names == {"test_offline_throughput", "test_speedup_over_bf16"}
    assert "slm: 2 test(s) marked slm_self_check left out: a self-check of the harness" in out
    assert "--slm-self-check or --slm-profile full runs it" in out
    # two serving levels (c1, c8) plus the saturation point of each SLO preset for each sweep kind
    assert "slm: 6 test(s) marked slm_serving left out: serving levels on request" in out
    assert "--slm-concurrency N.. or --slm-request-rate R.." in out


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--slm-self-check",), SELF_CHECKS),
        (("--slm-concurrency", "1", "8"), SERVING),
        (("--slm-request-rate", "4"), SERVING),
        (("--slm-profile", "full"), SELF_CHECKS | SERVING),
    ],
    ids=["self-check", "concurrency", "request-rate", "full-profile"],
)
def test_asking_brings_them_back(slm_pytester: SlmPytester, args: tuple[str, ...], expected: set[str]) -> None:
    names, out = collected(slm_pytester, *args)
    assert expected <= names
    assert not ((SELF_CHECKS | SERVING) - expected) & names
    for marker, tests in (("slm_self_check", SELF_CHECKS), ("slm_serving", SERVING)):
        assert (f"marked {marker} left out" in out) is not (tests <= expected)


def test_a_serving_level_from_the_ini_file_asks_for_serving(slm_pytester: SlmPytester) -> None:
    slm_pytester.pytester.makeini("[pytest]\nslm_concurrency = 2\n")
    names, _ = collected(slm_pytester)
    assert names >= SERVING and not SELF_CHECKS & names


def test_what_is_requested_is_read_from_the_settings_alone() -> None:
    quick = Settings()
    assert set(not_requested(quick)) == set(ON_REQUEST_MARKERS)
    assert set(not_requested(replace(quick, self_check=True))) == {"slm_serving"}
    assert set(not_requested(replace(quick, sources={"request_rate": "--slm-request-rate"}))) == {"slm_self_check"}
    assert not_requested(replace(quick, profile="full")) == {}


FAILING_SELF_CHECK = """
import pytest


@pytest.mark.slm_self_check
def test_harness_check(slm_engine, slm):
    slm.record("harness_offline_ratio", 0.5, unit="1", higher_is_better=True)
    assert False, "the harness distorts"


def test_fine(slm_engine, slm):
    slm.record("x_s", 1.0, unit="s", higher_is_better=False)
"""


def test_a_confirmation_reruns_a_failed_self_check_it_was_not_asked_for(slm_pytester: SlmPytester, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The confirmation reruns what the earlier run left unsettled, whatever its own command line asks for: a
    self-check that failed under --slm-self-check is not left out of a confirmation run without it (it would
    then run nothing and exit 0)."""
    slm_pytester.pytester.makepyfile(test_mine=FAILING_SELF_CHECK)
    first = slm_pytester.run("--slm-self-check")
    first.assert_outcomes(passed=1, failed=1)
    saved = tmp_path / "first.json"
    saved.write_text((slm_pytester.output / "results.json").read_text())
    again = slm_pytester.run("--slm-confirm", str(saved))
    again.assert_outcomes(failed=1, deselected=1)
    assert "marked slm_self_check left out" not in again.stdout.str()
    # and without the confirmation, the same command line leaves it out as the quick default does
    slm_pytester.run().assert_outcomes(passed=1, deselected=1)
