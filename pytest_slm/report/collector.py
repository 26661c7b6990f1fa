"""The controller-side collector: turns test reports into report rows and writes them.

Registered only where reports end up (the xdist controller, or the single process without
xdist). It reads ``report.user_properties``, which xdist replays from workers, so ``-n 2``
needs no extra code. Files are rewritten after every test that recorded something, so a
crash later in the session loses nothing already measured.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pytest_slm import atomic, results
from pytest_slm.record import NOT_RUN, STARTED, USER_PROPERTY_KEY
from pytest_slm.report import writers
from pytest_slm.results import environment

ENGINE_PROPERTY_KEY = "slm_engine"
ATTACHMENT_PROPERTY_KEY = "slm_attachment"
#: marks the reports of tests that use pytest-slm's fixtures (only their skips belong in the report)
SLM_TEST_PROPERTY_KEY = "slm_test"
#: figures a test's baseline holds that this run did not measure (the test skipped, or did not record them)
UNMEASURED_PROPERTY_KEY = "slm_unmeasured"


def strip_xdist_group(nodeid: str) -> str:
    """Drop the ``@group`` suffix ``--dist loadgroup`` appends, so ids match a serial run."""
    head, sep, tail = nodeid.rpartition("@")
    plain = sep and "::" in head and not any(c in tail for c in "/:[]")
    return head if plain else nodeid


class ReportCollector:
    """Accumulates records and skips from test reports; owns results.json / results.md."""

    def __init__(self, output: Path, environment: dict[str, Any]) -> None:
        self.output = output
        self.environment = environment
        self.records: list[results.Record] = []
        self.skipped: list[dict[str, Any]] = []
        #: node id -> {"outcome": ..., "duration_s": ...}: every collected test, pytest's outcome for it (see
        #: :func:`outcome_after`) and its wall time so far (setup + call + teardown: an engine load or a
        #: quantization counts on the first test that needed it)
        self.tests: dict[str, dict[str, Any]] = {}
        #: figures the baseline holds that this run did not measure (see ``UNMEASURED_PROPERTY_KEY``)
        self.unmeasured: list[dict[str, Any]] = []
        #: whether this run has pytest-slm tests (a plain pytest run with the plugin installed writes nothing)
        self.ours = False
        self.markdown: str | None = None

    def collected(self, nodeids: list[str], ours: bool) -> None:
        """Register the tests this run will run; where any of them is pytest-slm's (``ours``: it uses
        the plugin's fixtures), write results.json at once: a run killed later leaves every test it
        never reported as "not run", which a confirmation runs again."""
        for nodeid in nodeids:
            self.tests.setdefault(strip_xdist_group(nodeid), {"outcome": NOT_RUN})
        self.ours = self.ours or ours
        if self.tests and self.ours:
            self.flush()

    def add_report(
        self,
        nodeid: str,
        when: str,
        outcome: str,
        user_properties: list[tuple[str, Any]],
        skip_reason: str | None,
        duration: float = 0.0,
    ) -> None:
        nodeid = strip_xdist_group(nodeid)
        entry = self.tests.setdefault(nodeid, {"outcome": NOT_RUN})
        entry["outcome"] = outcome_after(entry["outcome"], when, outcome)
        entry["duration_s"] = round(entry.get("duration_s", 0.0) + duration, 3)
        changed = False
        for key, value in user_properties:
            if key == ENGINE_PROPERTY_KEY and isinstance(value, Mapping):
                engines = self.environment.setdefault("engines", {})
                if value.get("id") not in engines:
                    engines[str(value.get("id"))] = dict(value)
                    changed = True
            elif key == ATTACHMENT_PROPERTY_KEY and when == "call":
                text = "".join(json.dumps(row, default=str) + "\n" for row in value["rows"])
                atomic.write_text(self.output / value["path"], text)
            elif key == UNMEASURED_PROPERTY_KEY and when != "teardown":  # item properties repeat in teardown
                self.unmeasured.extend({**row, "test": nodeid} for row in value)
                changed = True
            elif key == USER_PROPERTY_KEY and when == "call":
                for rec in value:
                    self.records.append(results.finished(rec, nodeid, outcome))
                    changed = True
        ours = any(key == SLM_TEST_PROPERTY_KEY for key, _ in user_properties)
        if ours and not self.ours:
            self.ours = changed = True
        if ours and outcome == "skipped" and skip_reason is not None and (when == "setup" or when == "call"):
            self.skipped.append({"test": nodeid, "reason": skip_reason})
            changed = True
        if changed:
            self.flush()

    def flush(self) -> str:
        environment.add_gpus(self.environment)
        self.markdown = writers.write(
            self.output, self.environment, self.records, self.skipped, self.tests, self.unmeasured
        )
        return self.markdown

    def publish_step_summary(self, gate: Sequence[str] = (), environ: Mapping[str, str] = os.environ) -> None:
        """Append the gate's lines and the compact table to ``$GITHUB_STEP_SUMMARY`` when running in
        GitHub Actions."""
        path = environ.get("GITHUB_STEP_SUMMARY")
        if path and self.markdown:
            from pytest_slm.report.terminal import compact_markdown

            lines = "".join(f"- {line}\n" for line in gate)
            with open(path, "a", encoding="utf-8") as f:
                f.write(
                    "## pytest-slm results\n\n"
                    + (lines + "\n" if lines else "")
                    + compact_markdown(self.records)
                    + "\n"
                )


def outcome_after(before: str, when: str, outcome: str) -> str:
    """A test's outcome after one more of its reports: pytest's ``passed``/``failed``/``skipped`` for
    the call, ``error`` for a failed setup or teardown (a failed call stays ``failed``), ``skipped``
    for a skipped setup; ``started`` while only the setup has passed."""
    if when == "setup":
        return {"failed": "error", "skipped": "skipped"}.get(outcome, STARTED)
    if when == "call":
        return outcome
    if outcome == "failed" and before != "failed":  # teardown
        return "error"
    return before
