"""Accuracy through lm-eval on the fake engine: local tasks, metrics with stderr, retention.

Inner sessions run in a subprocess: lm-eval imports numpy, which pytester's in-process runs
would import a second time (and numpy warns about that).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

#: the real benchmark file, run in inner sessions on the fake engine
BENCH = (Path(__file__).resolve().parents[1] / "benches" / "test_accuracy.py").read_text()


@pytest.fixture
def arith_task(tmp_path: Path) -> Path:
    """A tiny generate_until task with lm-eval's gsm8k answer format, under --slm-task-path."""
    d = tmp_path / "tasks"
    d.mkdir()
    rows = [
        {"question": f"What is {a} + {b}?", "answer": f"{a} + {b} = {a + b}\n#### {a + b}"}
        for a, b in [(2, 2), (1, 3), (3, 4), (2, 5), (0, 4)]
    ]
    (d / "arith.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (d / "arith.yaml").write_text(f"""
task: arith
dataset_path: json
dataset_kwargs:
  data_files:
    test: {d / "arith.jsonl"}
output_type: generate_until
test_split: test
fewshot_split: test
doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
doc_to_target: "{{{{answer}}}}"
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
    regexes_to_ignore: ["(?s).*#### "]
generation_kwargs:
  until: ["Question:"]
  do_sample: false
filter_list:
  - name: strict-match
    filter:
      - function: regex
        regex_pattern: "#### (\\\\-?[0-9\\\\.\\\\,]+)"
      - function: take_first
metadata:
  version: 1.0
""")
    return d


def test_generation_and_multiple_choice_tasks(slm_pytester, arith_task: Path) -> None:
    slm_pytester.pytester.makepyfile(BENCH)
    result = slm_pytester.run(
        "-k",
        "accuracy or perplexity",
        "--slm-accuracy-tasks",
        "arith",
        "slm_mc",
        "--slm-task-path",
        str(arith_task),
        "--slm-num-fewshot",
        "1",
        "--slm-accuracy-limit",
        "5",
        subprocess=True,
    )
    result.assert_outcomes(passed=3)
    recs = {r["metric"]: r for r in slm_pytester.results()["records"]}
    em = recs["arith.exact_match.strict_match"]
    # the fake always answers "#### 4": right for 2+2, 1+3 and 0+4 only
    assert em["value"] == pytest.approx(3 / 5) and em["samples"] == [1.0, 1.0, 0.0, 0.0, 1.0]
    assert em["stderr"] == pytest.approx((0.6 * 0.4 / 4) ** 0.5) and em["higher_is_better"] is True
    assert em["info"]["num_fewshot"] == 1 and em["info"]["limit"] == 5 and em["n"] == 5
    acc = recs["slm_mc.acc"]
    assert 0.0 <= acc["value"] <= 1.0 and len(acc["samples"]) == 5 and acc["stderr"] is not None
    ppl = recs["slm_ppl.word_perplexity"]
    assert ppl["higher_is_better"] is False and ppl["value"] > 1
    assert recs["slm_ppl.bits_per_byte"]["unit"] == "bit/byte"
    assert recs["slm_ppl.token_perplexity"]["n"] > 1000


def test_unavailable_dataset_is_skipped_with_task_name(
    slm_pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    slm_pytester.pytester.makepyfile(BENCH)
    result = slm_pytester.run(
        "--slm-accuracy-tasks", "arc_easy", "--slm-accuracy-limit", "2", "-k", "test_accuracy", subprocess=True
    )
    result.assert_outcomes(skipped=1)
    (skip,) = slm_pytester.results()["skipped"]
    assert "task 'arc_easy'" in skip["reason"] and "cannot be loaded" in skip["reason"]


def test_broken_local_task_fails_with_its_traceback_not_a_skip(slm_pytester, tmp_path: Path) -> None:
    """A task whose own data file is missing is a bug to fix, not a dataset the hub cannot serve."""
    d = tmp_path / "broken"
    d.mkdir()
    (d / "broken.yaml").write_text(f"""
task: broken
dataset_path: json
dataset_kwargs:
  data_files:
    test: {d / "missing.jsonl"}
output_type: generate_until
test_split: test
doc_to_text: "{{{{question}}}}"
doc_to_target: "{{{{answer}}}}"
metric_list:
  - metric: exact_match
metadata:
  version: 1.0
""")
    slm_pytester.pytester.makepyfile(BENCH)
    result = slm_pytester.run(
        "--slm-accuracy-tasks", "broken", "--slm-task-path", str(d), "-k", "test_accuracy", subprocess=True
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*FileNotFoundError*missing.jsonl*"])
    assert slm_pytester.results()["skipped"] == []


@pytest.mark.parametrize("source", ["shipped", "local-data"])
def test_gsm8k_local_reads_the_shipped_subset_or_local_data(slm_pytester, tmp_path: Path, source: str) -> None:
    args = ["--slm-accuracy-tasks", "gsm8k_local", "--slm-accuracy-limit", "3", "--slm-num-fewshot", "1"]
    if source == "local-data":
        # a user's own copy whose every answer is 4: the fake engine (always "#### 4") scores 1.0
        folder = tmp_path / "data" / "gsm8k"
        folder.mkdir(parents=True)
        rows = "".join(json.dumps({"question": f"q{i}", "answer": "a\n#### 4"}) + "\n" for i in range(5))
        for name in ("train.jsonl", "test.jsonl"):
            (folder / name).write_text(rows)
        args += ["--slm-local-data", str(tmp_path / "data")]
    slm_pytester.pytester.makepyfile(BENCH)
    result = slm_pytester.run(*args, "-k", "test_accuracy", subprocess=True)
    result.assert_outcomes(passed=1)
    em = next(r for r in slm_pytester.results()["records"] if r["metric"] == "gsm8k_local.exact_match.strict_match")
    assert em["n"] == 3 and em["info"]["num_fewshot"] == 1
    test_file = Path(em["info"]["data_files"]["test"])
    data_id = em["info"]["workload"]  # the baseline identity names the files by content, not by path
    assert {"data.test", "data.train"} <= set(data_id) and data_id["data.test"].startswith(test_file.name + "@")
    if source == "shipped":
        assert test_file.name == "test_first100.jsonl" and test_file.parent.name == "gsm8k"
        assert test_file.parent.parent.name == "data" and test_file.parent.parent.parent.name == "accuracy"
        assert em["value"] < 1.0  # the real first three GSM8K items are not all answered by "4"
    else:
        assert test_file == tmp_path / "data" / "gsm8k" / "test.jsonl"
        assert em["value"] == 1.0


def test_unknown_task_fails_with_a_clear_message(slm_pytester) -> None:
    slm_pytester.pytester.makepyfile(BENCH)
    result = slm_pytester.run("--slm-accuracy-tasks", "no_such_task_xyz", "-k", "test_accuracy", subprocess=True)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*UnknownTask: unknown lm-eval task 'no_such_task_xyz'*"])


def test_retention_of_a_quantized_precision_against_bf16(slm_pytester) -> None:
    slm_pytester.pytester.makepyfile(BENCH)
    result = slm_pytester.run(
        "--slm-accuracy-tasks",
        "slm_mc",
        "--slm-accuracy-limit",
        "20",
        "--slm-num-fewshot",
        "0",
        "--precision",
        "bf16",
        "int4",
        "--slm-retention-floor",
        "0.5",
        "slm_ppl=0.99",
        subprocess=True,
    )
    result.assert_outcomes(passed=5, failed=1, skipped=2)
    recs = slm_pytester.results()["records"]
    ret = {r["metric"]: r for r in recs if r["precision"] == "int4" and r["metric"].endswith(".retention")}
    assert {"slm_mc.acc.retention", "slm_ppl.word_perplexity.retention"} <= set(ret)
    ppl = ret["slm_ppl.word_perplexity.retention"]
    assert ppl["value"] < 0.99 and ppl["info"]["reference"] < ppl["info"]["current"]
    assert ppl["info"]["verdict"] == "fails" and ppl["info"]["high"] < 0.99
    assert ppl["info"]["method"].startswith("paired bootstrap over")
    # perplexity retention is below its per-task floor with confidence: that test fails, naming both figures
    result.stdout.fnmatch_lines(
        ["*slm_ppl.word_perplexity: int4 * vs bf16 * -> retention * fails the floor 0.99 (paired bootstrap*"]
    )
    # speeds never get a retention: they are not quality
    assert not any("items_per_s" in name for name in ret)
    acc = ret["slm_mc.acc.retention"]
    assert acc["info"]["method"].startswith("paired items") and acc["info"]["verdict"] in ("passes", "inconclusive")
    outcomes = {r["test"].split("::")[-1]: r["outcome"] for r in recs if r["metric"].endswith(".retention")}
    assert outcomes["test_retention[tiny-model-int4-slm_ppl]"] == "failed"
    skipped = [s["reason"] for s in slm_pytester.results()["skipped"]]
    assert any("this cell is bf16" in s for s in skipped)


def test_retention_without_bf16_in_session_skips(slm_pytester) -> None:
    slm_pytester.pytester.makepyfile(BENCH)
    result = slm_pytester.run(
        "--slm-accuracy-tasks",
        "slm_mc",
        "--slm-accuracy-limit",
        "4",
        "--precision",
        "int4",
        "-k",
        "not test_accuracy and not test_perplexity",
        subprocess=True,
    )
    result.assert_outcomes(skipped=2)
    assert "run with --precision bf16 int4" in slm_pytester.results()["skipped"][0]["reason"]


@pytest.mark.parametrize(
    ("args", "compared"),
    [
        (("--precision", "bf16", "int4"), "tiny-model-int4"),
        (("--slm-kv-cache-dtype", "auto", "fp8"), "tiny-model-bf16-kvfp8"),
    ],
)
def test_retention_alone_evaluates_its_reference_while_that_engine_is_loaded(
    slm_pytester, args: tuple[str, ...], compared: str
) -> None:
    slm_pytester.pytester.makepyfile(BENCH)
    result = slm_pytester.run(
        *args,
        "--slm-accuracy-tasks",
        "slm_mc",
        "--slm-accuracy-limit",
        "6",
        "--slm-retention-floor",
        "0.01",
        "-k",
        "not test_accuracy and not test_perplexity",
        subprocess=True,
    )
    result.assert_outcomes(passed=2, skipped=2)  # the reference cell's two tasks skip, after evaluating
    recs = [r for r in slm_pytester.results()["records"] if r["metric"] == "slm_mc.acc.retention"]
    assert [r["engine_id"] for r in recs] == [compared]
    assert recs[0]["info"]["reference_precision"] == ("bf16" if "int4" in compared else "bf16 (kv auto)")
