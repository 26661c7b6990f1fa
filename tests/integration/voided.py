"""How much of one real ``pytest benches`` session the machine may void: the integration tier accepts an
invalid measurement the machine caused, but not a validity check that voids everything."""

from __future__ import annotations

from typing import Any

#: At most this share of a session's checked tests may be invalid. Why three quarters: on this 2-core VM the
#: machine voids windows now and then, and a voided window voids every test that took its run (the
#: single-stream run backs six tests: TTFT, TPOT, ITL, E2E, the engine cross-check and the decode roofline;
#: the batch run four; a client-lagged serving level its own test and its sweep's saturation point). On
#: 2026-12-06, six sessions of the latency, throughput and footprint benches voided 5, 6, 0, 0, 4 (of 4 rerun)
#: and 0 of 11 tests: the reference kernel moved 13 to 24 % within a window, two of the three windows of a
#: session at worst, 55 % of its checked tests. Half would have failed the suite on one of those sessions for
#: the machine's doing; three quarters still fails a check that voids all of a session's windows, or all but
#: a footprint figure, which is the defect this guards against.
MAX_INVALID_SHARE = 0.75


def voided_and_checked(doc: dict[str, Any]) -> tuple[set[str], set[str]]:
    """(tests whose measurement was invalid, tests whose figures rest on a checked window) of one
    results.json. A test stands for the windows it took; a record without ``validity`` (written before
    the field) counts as checked, so the share is then taken over every test that recorded a figure."""
    checked = {r["test"] for r in doc["records"] if r.get("validity") != "unchecked"}
    voided = {r["test"] for r in doc["records"] if r["outcome"] == "invalid"}
    return voided, checked


def assert_the_machine_voided_at_most_its_share(doc: dict[str, Any]) -> None:
    """Fail when more than :data:`MAX_INVALID_SHARE` of the session's checked tests are invalid."""
    voided, checked = voided_and_checked(doc)
    assert checked, "no test's figures rest on a checked window: validity by default did not apply"
    assert len(voided) <= MAX_INVALID_SHARE * len(checked), (
        f"{len(voided)} of {len(checked)} checked tests invalid (at most {MAX_INVALID_SHARE:.0%} may be): "
        + "; ".join(sorted({f"{r['test']}: {r['invalid_reasons']}" for r in doc["records"] if r["test"] in voided}))
    )
