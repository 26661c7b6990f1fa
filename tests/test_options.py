"""Options, their ini/env twins, precedence, and bad values (inner sessions on the fake engine)."""

from __future__ import annotations

import pytest

from pytest_slm.options import OPTIONS
from pytest_slm.precisions import PRECISIONS, UnknownPrecision, get_precision, resolve_precisions
from pytest_slm.settings import SettingsError, resolve

SHOW_SETTINGS = """
def test_show(slm_settings, slm):
    s = slm_settings
    print("SETTINGS", s.num_runs, s.batch_size, s.max_new_tokens, s.profile,
          ",".join(p.name for p in s.precisions), s.sources.get("num_runs"))
"""


def settings_line(result: pytest.RunResult) -> list[str]:
    line = next(x for x in result.outlines if "SETTINGS" in x)
    return line.split("SETTINGS", 1)[1].split()


def test_help_lists_every_option_with_its_ini_twin(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    text = result.stdout.str()
    for spec in OPTIONS:
        assert spec.flag in text
        assert spec.ini in text


def test_defaults_are_the_quick_profile(slm_pytester) -> None:
    slm_pytester.pytester.makepyfile(SHOW_SETTINGS)
    result = slm_pytester.pytester.runpytest("-s", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert settings_line(result) == ["10", "8", "64", "quick", "bf16", "None"]


def test_full_profile_and_explicit_knob(slm_pytester) -> None:
    slm_pytester.pytester.makepyfile(SHOW_SETTINGS)
    result = slm_pytester.pytester.runpytest("-s", "--slm-profile", "full", "--slm-batch-size", "4")
    assert settings_line(result)[:4] == ["500", "4", "256", "full"]


def test_precedence_cli_over_env_over_ini(slm_pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    p = slm_pytester.pytester
    p.makeini("[pytest]\nslm_num_runs = 7\nslm_precision = fp16\n")
    p.makepyfile(SHOW_SETTINGS)
    assert settings_line(p.runpytest("-s"))[0] == "7"
    monkeypatch.setenv("SLM_NUM_RUNS", "5")
    out = settings_line(p.runpytest("-s"))
    assert out[0] == "5" and out[4] == "fp16" and out[5] == "environment"
    out = settings_line(p.runpytest("-s", "--slm-num-runs", "3"))
    assert out[0] == "3" and out[5] == "--slm-num-runs"


def test_marker_overrides_everything(slm_pytester) -> None:
    p = slm_pytester.pytester
    p.makepyfile("""
import pytest

@pytest.mark.slm(num_runs=2, max_new_tokens=4)
def test_m(slm):
    assert slm.settings.num_runs == 2 and slm.settings.max_new_tokens == 4
    assert slm.workload("single").concurrency == 1
    assert slm.workload("batch").concurrency == slm.settings.batch_size
""")
    p.runpytest("--slm-num-runs", "9").assert_outcomes(passed=1)


def test_unknown_precision_is_a_usage_error_listing_valid_names(slm_pytester) -> None:
    slm_pytester.pytester.makepyfile(SHOW_SETTINGS)
    result = slm_pytester.pytester.runpytest("--precision", "int3")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--precision*unknown precision 'int3'*valid: auto, bf16, fp16, fp8, int8*"])


def test_bad_env_value_names_the_variable(slm_pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    slm_pytester.pytester.makepyfile(SHOW_SETTINGS)
    monkeypatch.setenv("SLM_BATCH_SIZE", "eight")
    result = slm_pytester.pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*environment variable SLM_BATCH_SIZE: batch_size must be an integer, got 'eight'*"])


def test_bad_marker_setting_names_the_test(slm_pytester) -> None:
    slm_pytester.pytester.makepyfile("""
import pytest

@pytest.mark.slm(num_runz=2)
def test_m(slm):
    pass
""")
    result = slm_pytester.pytester.runpytest()
    assert result.ret != 0
    assert "unknown setting(s) ['num_runz']" in result.stdout.str() + result.stderr.str()


def test_prompt_from_missing_file_is_a_usage_error(slm_pytester) -> None:
    slm_pytester.pytester.makepyfile(SHOW_SETTINGS)
    result = slm_pytester.pytester.runpytest("--slm-prompt", "file:nope.txt")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--slm-prompt: cannot read prompt file nope.txt*"])


@pytest.mark.parametrize(
    ("typed", "name"),
    [("FP16", "fp16"), ("INT4-W4A16", "int4"), ("w8a8", "int8"), ("Int8-W8A16-RTN", "w8a16-rtn"), ("fp8-w8a8", "fp8")],
)
def test_aliases_are_case_insensitive(typed: str, name: str) -> None:
    assert get_precision(typed).name == name


def test_all_expands_to_every_precision_but_auto_once() -> None:
    got = resolve_precisions(["bf16", "all"])
    assert [p.name for p in got] == [p.name for p in PRECISIONS if p.name != "auto"]


def test_unknown_precision_message_lists_aliases() -> None:
    with pytest.raises(UnknownPrecision, match=r"aliases: .*w4a16 \(int4\)"):
        get_precision("int2")


def test_resolve_validates_ranges() -> None:
    with pytest.raises(SettingsError, match="num_runs must be >= 1, got 0"):
        resolve(lambda spec: ("0", "--slm-num-runs") if spec.field == "num_runs" else None)
    with pytest.raises(SettingsError, match=r"gpu_memory_utilization must be in \(0, 1\]"):
        resolve(
            lambda spec: ("1.5", "--slm-gpu-memory-utilization") if spec.field == "gpu_memory_utilization" else None
        )


def test_a_confirmation_cannot_save_a_baseline() -> None:
    """The tests a confirmation reruns were picked because they did not pass: not a session to save."""
    given = {"confirm": ("first.json", "--slm-confirm"), "save_baseline": ("true", "--slm-save-baseline")}
    with pytest.raises(SettingsError, match=r"--slm-confirm with --slm-save-baseline: .*biased sample"):
        resolve(lambda spec: given.get(spec.field))
    assert resolve(lambda spec: given.get(spec.field) if spec.field == "confirm" else None).confirm is not None


def test_every_option_but_models_and_precision_is_prefixed() -> None:
    """Unprefixed flags collide with other plugins (--batch-size, --prompt, ...)."""
    from pytest_slm.options import OPTIONS

    unprefixed = [o.flag for o in OPTIONS if not o.flag.startswith("--slm-")]
    assert sorted(unprefixed) == ["--models", "--precision"]


def test_every_option_is_a_settings_field_with_the_option_default() -> None:
    """One declaration: each option's default is the Settings default, and each field is an option."""
    import dataclasses

    from pytest_slm.settings import Settings

    settings = Settings()
    fields = {f.name for f in dataclasses.fields(Settings)}
    assert {spec.attribute for spec in OPTIONS} == fields - {"accuracy_task_limits", "sources"}
    for spec in OPTIONS:
        assert getattr(settings, spec.attribute) == spec.default_value(), spec.flag
        if spec.default is not None:  # a declared default is a value the option accepts, and --help shows it
            assert "(default: " in spec.describe() or spec.default is False, spec.flag
