"""Accuracy through lm-eval on the fake engine: local tasks, metrics with stderr, retention.

Inner sessions run in a subprocess: lm-eval imports numpy, which pytester's in-process runs
would import a second time (and numpy warns about that).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

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


# -- the chat template: lm-eval's convention (off unless asked), whatever the speed workloads do ----------

#: a fake whose tokenizer has a chat template, as an instruct model's has (so ``--slm-chat-template auto``
#: templates the speed workloads), and that answers like an instruct model: right only when asked
#: through the template; written into the inner session's folder
CHAT_FAKE = """
from tests.fake_engine import CharTokenizer, FakeEngine


class ChatTokenizer(CharTokenizer):
    chat_template = "<role>content</role>"  # its presence is what counts; apply_chat_template renders

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=True, continue_final_message=False):
        text = "".join(f"<{m['role']}>{m['content']}</{m['role']}>" for m in messages)
        return text + ("<assistant>" if add_generation_prompt else "")


class ChatFakeEngine(FakeEngine):
    tokenizer = ChatTokenizer()

    def complete(self, token_prompts, *, max_tokens, stop, temperature=0.0):
        asked = [self.tokenizer.decode(list(p)) for p in token_prompts]
        return [" #### 4" if text.startswith("<user>") else " #### 0" for text in asked]
"""

#: an inner conftest that notes what each ``lm_eval.simple_evaluate`` call was asked for
RECORD_CALLS = """
import json

import lm_eval

_simple_evaluate = lm_eval.simple_evaluate


def recording(*args, **kwargs):
    with open("simple_evaluate_calls.jsonl", "a", encoding="utf-8") as f:
        keys = ("tasks", "apply_chat_template", "fewshot_as_multiturn")
        f.write(json.dumps({k: kwargs.get(k) for k in keys}) + "\\n")
    return _simple_evaluate(*args, **kwargs)


lm_eval.simple_evaluate = recording
"""


def test_chat_template_settings_follow_lm_eval() -> None:
    """Off by default; the template brings multi-turn few-shot unless that is set false (lm-eval's
    CLI rule); multi-turn without the template is refused, as lm-eval refuses it."""
    from pytest_slm.settings import SettingsError, resolve

    def given(**raw: tuple[object, str]) -> Any:
        return resolve(lambda spec: raw.get(spec.field))

    default = given()
    assert (default.apply_chat_template, default.fewshot_as_multiturn) == (False, False)
    on = given(apply_chat_template=(True, "--slm-apply-chat-template"))
    assert (on.apply_chat_template, on.fewshot_as_multiturn) == (True, True)
    assert on.sources["fewshot_as_multiturn"] == "--slm-apply-chat-template"
    single = given(
        apply_chat_template=(True, "--slm-apply-chat-template"),
        fewshot_as_multiturn=("false", "environment variable SLM_FEWSHOT_AS_MULTITURN"),
    )
    assert (single.apply_chat_template, single.fewshot_as_multiturn) == (True, False)
    with pytest.raises(SettingsError, match="SLM_FEWSHOT_AS_MULTITURN: few-shot turns need the chat template"):
        given(fewshot_as_multiturn=("1", "environment variable SLM_FEWSHOT_AS_MULTITURN"))


@pytest.mark.parametrize(
    ("args", "template", "multiturn"),
    [
        ((), False, False),
        (("--slm-apply-chat-template",), True, True),
        (("--slm-apply-chat-template", "-o", "slm_fewshot_as_multiturn=false"), True, False),
    ],
    ids=["default", "template", "template-single-turn"],
)
def test_chat_template_reaches_lm_eval_and_the_workload(
    slm_pytester, arith_task: Path, args: tuple[str, ...], template: bool, multiturn: bool
) -> None:
    """lm-eval gets ``apply_chat_template=False`` by default even where the tokenizer has a template and
    ``--slm-chat-template auto`` uses it for the speed workloads; the options turn it on, the engine is
    asked through the template, and both switches are in every accuracy figure's workload."""
    p = slm_pytester.pytester
    p.makepyfile(BENCH, chat_fake=CHAT_FAKE, conftest=RECORD_CALLS)
    result = slm_pytester.run(
        "--slm-engine",
        "chat_fake:ChatFakeEngine",
        "--slm-accuracy-tasks",
        "arith",
        "--slm-task-path",
        str(arith_task),
        "--slm-num-fewshot",
        "1",
        "--slm-accuracy-limit",
        "5",
        "--slm-log-samples",
        "-k",
        "test_accuracy",
        *args,
        subprocess=True,
    )
    result.assert_outcomes(passed=1)
    calls = [json.loads(line) for line in (p.path / "simple_evaluate_calls.jsonl").read_text().splitlines()]
    assert calls == [{"tasks": ["arith"], "apply_chat_template": template, "fewshot_as_multiturn": multiturn}]
    em = next(r for r in slm_pytester.results()["records"] if r["metric"] == "arith.exact_match.strict_match")
    assert em["info"]["workload"]["apply_chat_template"] is template
    assert em["info"]["workload"]["fewshot_as_multiturn"] is multiturn
    # the fake answers "#### 4" (right for 3 of 5) only when asked through the template
    assert em["value"] == pytest.approx(3 / 5 if template else 0.0)
    samples = slm_pytester.output / "samples" / "tiny-model-bf16" / "arith.jsonl"
    prompt = json.loads(samples.read_text().splitlines()[0])["arguments"][0][0]
    if not template:
        assert prompt.startswith("Question: ") and "<user>" not in prompt
    else:  # one shot: its question and answer as turns of their own, or all in one user message
        assert prompt.startswith("<user>Question: ") and prompt.endswith("<assistant>")
        assert prompt.count("<user>") == (2 if multiturn else 1)


def test_baseline_made_with_the_chat_template_is_incomparable(slm_pytester, arith_task: Path) -> None:
    """A figure stored with the template (the default before lm-eval's convention was followed) is
    never compared with one measured without it."""
    p = slm_pytester.pytester
    p.makepyfile(
        chat_fake=CHAT_FAKE,
        test_acc="def test_acc(slm_accuracy, slm):\n    slm.extend(slm_accuracy.run('arith').metrics)\n",
    )
    common = (
        "--slm-engine",
        "chat_fake:ChatFakeEngine",
        "--slm-baseline-dir",
        str(p.path / "baselines"),
        "--slm-task-path",
        str(arith_task),
        "--slm-accuracy-tasks",
        "arith",
        "--slm-num-fewshot",
        "0",
    )
    slm_pytester.run(*common, "--slm-apply-chat-template", "--slm-save-baseline", subprocess=True).assert_outcomes(
        passed=1
    )
    slm_pytester.run(*common, subprocess=True).assert_outcomes(passed=1)
    em = next(r for r in slm_pytester.results()["records"] if r["metric"] == "arith.exact_match.strict_match")
    assert em["baseline"]["verdict"] == "incomparable"
    assert "apply_chat_template was True, is False" in em["baseline"]["note"]


def test_chat_template_asked_of_a_tokenizer_without_one_fails_naming_the_option() -> None:
    import dataclasses
    from types import SimpleNamespace

    from pytest_slm.accuracy.runner import AccuracyRunner
    from pytest_slm.measure.chat import ChatTemplateError
    from pytest_slm.settings import Settings
    from tests.fake_engine import CharTokenizer

    settings = dataclasses.replace(
        Settings(), apply_chat_template=True, sources={"apply_chat_template": "ini option slm_apply_chat_template"}
    )
    engine = SimpleNamespace(tokenizer=CharTokenizer(), max_model_len=4096, spec=SimpleNamespace(model_name="tiny"))
    runner = AccuracyRunner(engine, None, settings, {})  # type: ignore[arg-type]
    with pytest.raises(ChatTemplateError, match=r"^ini option slm_apply_chat_template: the tokenizer of tiny has no"):
        runner.run("slm_mc")
