"""Chat templates: auto where the tokenizer has one, on/off on request, recorded in the workload."""

from __future__ import annotations

import pytest

from pytest_slm.measure.chat import ChatTemplateError, render, use_chat_template


class TemplatedTokenizer:
    chat_template = "{{ messages }}"

    def apply_chat_template(self, messages, tokenize: bool, add_generation_prompt: bool) -> str:  # type: ignore[no-untyped-def]
        assert tokenize is False and add_generation_prompt is True
        return f"<user>{messages[0]['content']}</user><assistant>"


class PlainTokenizer:
    pass


def test_modes() -> None:
    assert use_chat_template("auto", TemplatedTokenizer()) is True
    assert use_chat_template("auto", PlainTokenizer()) is False
    assert use_chat_template("off", TemplatedTokenizer()) is False
    assert use_chat_template("on", TemplatedTokenizer()) is True
    with pytest.raises(ChatTemplateError, match="tiny has no chat template"):
        use_chat_template("on", PlainTokenizer(), "tiny")


def test_render_is_one_user_turn() -> None:
    assert render(TemplatedTokenizer(), "hi") == "<user>hi</user><assistant>"


WORKLOAD_TEST = """
def test_w(slm_runs, slm):
    from pytest_slm.measure.latency import latency_metrics
    slm.extend(latency_metrics(slm_runs.streaming(slm.workload("batch")), "tpot"))
"""


def test_workload_records_the_choice(slm_pytester) -> None:
    slm_pytester.pytester.makepyfile(WORKLOAD_TEST)
    slm_pytester.run().assert_outcomes(passed=1)
    rec = slm_pytester.results()["records"][0]
    assert rec["workload"]["chat_template"] is False and rec["workload"]["prompt_source"] == "shipped"
    assert rec["workload"]["prompt_distinct"] == 8
    result = slm_pytester.run("--slm-chat-template", "on")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*--slm-chat-template on: the tokenizer of tiny-model has no chat template*"])
