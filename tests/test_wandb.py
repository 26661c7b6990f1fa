"""--slm-wandb: a clear error without wandb; with wandb, a real offline run (WANDB_MODE=offline) holding
the records table, the summary values and the report files as an artifact."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

BENCH = """
def test_a(slm_engine, slm):
    slm.record("output_tokens_per_s", 123.0, unit="token/s", higher_is_better=True)
    slm.record("ttft_p50_s", 0.25, unit="s", higher_is_better=False)
"""


def test_missing_wandb_is_a_clear_usage_error_only_when_asked(
    slm_pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "blocker" / "wandb"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError(\"No module named 'wandb'\")\n")
    p = slm_pytester.pytester
    p.makepyfile(BENCH)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(blocker.parent), os.environ["PYTHONPATH"]]))
    result = slm_pytester.run("--slm-wandb", "proj", subprocess=True)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--slm-wandb needs the wandb package*pip install wandb*"])
    # without the option, the missing package is nobody's business
    slm_pytester.run(subprocess=True).assert_outcomes(passed=1)


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_offline_run_holds_records_summary_and_report_files(
    slm_pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: list[str]
) -> None:
    pytest.importorskip("wandb", reason="wandb is optional and not installed here (pip install wandb)")
    p = slm_pytester.pytester
    for var, value in {
        "WANDB_MODE": "offline",
        "WANDB_DIR": str(tmp_path / "wb"),
        "WANDB_DATA_DIR": str(tmp_path / "wbdata"),
        "WANDB_CACHE_DIR": str(tmp_path / "wbcache"),
        "WANDB_SILENT": "true",
    }.items():
        monkeypatch.setenv(var, value)
    (tmp_path / "wb").mkdir()
    p.makepyfile(BENCH)
    result = slm_pytester.run("--slm-wandb", "slm-test-project", *workers, subprocess=True)
    result.assert_outcomes(passed=1)
    # one run, from the controller only, under xdist too
    result.stdout.fnmatch_lines(["*pytest-slm: logged 2 record(s) and * file(s) to W&B project 'slm-test-project'*"])
    (run_dir,) = (tmp_path / "wb" / "wandb").glob("offline-run-*")
    assert len([line for line in result.outlines if "to W&B project" in line]) == 1
    (table,) = run_dir.glob("files/media/table/records_*.table.json")
    data = json.loads(table.read_text())
    assert "metric" in data["columns"]
    rows = [dict(zip(data["columns"], row, strict=True)) for row in data["data"]]
    assert {(r["metric"], r["value"], r["precision"]) for r in rows} == {
        ("output_tokens_per_s", 123.0, "bf16"),
        ("ttft_p50_s", 0.25, "bf16"),
    }
    (log,) = run_dir.glob("run-*.wandb")
    raw = log.read_bytes()
    assert b"slm-test-project" in raw and b"::ttft_p50_s" in raw and b"pytest-slm-results" in raw
    # the artifact holds the very results.json the session wrote
    results = (slm_pytester.output / "results.json").read_bytes()
    staged = [f.read_bytes() for f in (tmp_path / "wbdata").rglob("*") if f.is_file()]
    assert results in staged
