"""``--slm-shard I/N``: a deterministic, balanced split of the matrix; shards add up to one run."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from pytest_slm import cli
from pytest_slm.configs.load import load
from pytest_slm.engine_api import EngineSpec
from pytest_slm.parametrize import engine_specs
from pytest_slm.precisions import get_precision
from pytest_slm.settings import Settings
from pytest_slm.shard import ModelCost, ShardPlan, assign, estimate_parameters, model_costs, parse_shard
from tests.fake_checkpoints import write_checkpoint

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(("text", "parsed"), [("1/1", (1, 1)), ("2/4", (2, 4)), (" 3 / 3 ", (3, 3))])
def test_parse(text: str, parsed: tuple[int, int]) -> None:
    assert parse_shard(text) == parsed


@pytest.mark.parametrize("text", ["0/3", "4/3", "x", "1/0", "1-3", "-1/3", ""])
def test_parse_rejects(text: str) -> None:
    with pytest.raises(ValueError, match=repr(text).replace("(", r"\(")):
        parse_shard(text)


def test_longest_first_to_least_loaded_with_name_tie_break() -> None:
    costs = [
        ModelCost(n, p, "config", k) for n, p, k in [("a", 10, 1), ("b", 7, 1), ("c", 5, 1), ("d", 5, 1), ("e", 3, 1)]
    ]
    shards = assign(costs, 2)
    # a(10) -> 1; b(7) -> 2; c(5) -> 2 (7 < 10); d(5) -> 1 (10 < 12); e(3) -> 2 (12 < 15)
    assert [[m.name for m in s] for s in shards] == [["a", "d"], ["b", "c", "e"]]
    # equal costs: alphabetical order decides, then the lower shard index
    twins = [ModelCost(n, 1, "config", 1) for n in ("z", "y", "x")]
    assert [[m.name for m in s] for s in assign(twins, 3)] == [["x"], ["y"], ["z"]]
    assert assign(list(reversed(costs)), 2) == shards  # input order does not matter


def test_cost_is_parameters_times_precisions_from_config_checkpoint_name(tmp_path: Path) -> None:
    ckpt = write_checkpoint(tmp_path / "local-x", 42_000)
    specs = [
        EngineSpec(str(ckpt), get_precision("bf16")),
        EngineSpec(str(ckpt), get_precision("int4")),
        EngineSpec("Qwen/Qwen2.5-1.5B-Instruct", get_precision("bf16")),
        EngineSpec("org/mystery", get_precision("bf16")),
    ]
    costs = {c.name: c for c in model_costs(specs)}
    assert (costs["local-x"].parameters, costs["local-x"].parameters_from, costs["local-x"].cost) == (
        42_000,
        "checkpoint",
        84_000,
    )
    assert costs["qwen2.5-1.5b-instruct"].parameters_from == "name"
    assert costs["qwen2.5-1.5b-instruct"].cost == 1_500_000_000
    assert (costs["mystery"].parameters, costs["mystery"].cost) == (None, 1)
    assert estimate_parameters("org/tiny-135m") == (135_000_000, "name")


#: docs/configs-and-ci.md "Shards and CI runners": estimated cost per shard, billions of parameters x precisions
README_TABLE = {2: [36.1, 35.8], 3: [23.7, 24.0, 24.2], 4: [17.5, 17.2, 19.0, 18.2]}


def test_ten_model_example_balance() -> None:
    config = load(REPO / "models")
    specs = engine_specs(Settings(), config)
    for n in (2, 3, 4):
        plan = ShardPlan.build(1, n, specs)
        names = [m.name for s in plan.shards for m in s]
        assert sorted(names) == sorted(e.name for e in config.entries)  # each model exactly once
        loads = plan.loads()
        # LPT's guarantee is 4/3 of the optimum; these ten models split far closer than that
        assert max(loads) / (sum(loads) / n) < 1.1, loads
        assert [round(x / 1e9, 1) for x in loads] == README_TABLE[n]  # the figures docs/configs-and-ci.md states


# -- on the fake engine --------------------------------------------------------------------------

TESTS = """
import pytest

def test_a(slm_engine, slm):
    slm.record("x_s", 1.0, unit="s", higher_is_better=False)

@pytest.mark.parametrize("k", [1, 2])
def test_b(slm_engine, slm, k):
    slm.record("y_s", float(k), unit="s", higher_is_better=False)

def test_no_engine(slm):
    slm.record("z", 3.0, unit="1", higher_is_better=True)
"""


@pytest.fixture
def four_models(tmp_path: Path) -> list[str]:
    sizes = {"m-a": 9_000, "m-b": 5_000, "m-c": 4_000, "m-d": 1_000}
    return [str(write_checkpoint(tmp_path / name, n)) for name, n in sizes.items()]


def run_ids(slm_pytester, models: list[str], *args: str) -> tuple[pytest.RunResult, set[tuple[str, str]], dict]:  # type: ignore[no-untyped-def, type-arg]
    # a fixed rootdir: test ids must not depend on which of the harness's paths exist yet
    rootdir = str(slm_pytester.pytester.path)
    result = slm_pytester.run("--rootdir", rootdir, "--models", *models, "--precision", "bf16", "int4", *args)
    doc = slm_pytester.results()
    return result, {(r["test"], r["metric"]) for r in doc["records"]}, doc


def ids(records: list[dict]) -> set[tuple[str, str]]:  # type: ignore[type-arg]
    return {(r["test"], r["metric"]) for r in records}


def test_union_of_shards_is_the_unsharded_run(slm_pytester, four_models: list[str]) -> None:
    slm_pytester.pytester.makepyfile(TESTS)
    result, whole, _ = run_ids(slm_pytester, four_models)
    result.assert_outcomes(passed=4 * 2 * 3 + 1)
    union: set[tuple[str, str]] = set()
    seen_models: dict[str, int] = {}
    outputs = []
    for i in (1, 2, 3):
        out = slm_pytester.pytester.path / f"shard-{i}"
        outputs.append(out / "results.json")
        result, _, _ = run_ids(slm_pytester, four_models, "--slm-shard", f"{i}/3", "--slm-output", str(out))
        doc = json.loads(outputs[-1].read_text())
        part = ids(doc["records"])
        assert not (union & part), "a record in two shards"
        union |= part
        shard = doc["environment"]["shard"]
        assert (shard["index"], shard["count"]) == (i, 3)
        models = {r["model"] for r in doc["records"] if r.get("model")}
        assert models == set(shard["models"])
        for m in models:
            seen_models[m] = seen_models.get(m, 0) + 1
        deselected = (4 - len(models)) * 2 * 3 + (0 if i == 1 else 1)
        result.assert_outcomes(passed=len(models) * 2 * 3 + (1 if i == 1 else 0), deselected=deselected)
    assert union == whole
    assert seen_models == {"m-a": 1, "m-b": 1, "m-c": 1, "m-d": 1}, "a model split across shards"
    # the CI merge job: one report from the three shards holds exactly the unsharded run's records
    merged_dir = slm_pytester.pytester.path / "merged"
    code = cli.main(["report", *map(str, outputs), "--output-dir", str(merged_dir), "--no-plots"], io.StringIO())
    merged = json.loads((merged_dir / "complete_results.json").read_text())
    assert code == 0 and merged["duplicates"] == 0 and merged["conflicts"] == [] and merged["errors"] == []
    assert ids(merged["records"]) == whole and len(merged["records"]) == len(whole)
    assert (merged_dir / "executive_summary.md").is_file() and (merged_dir / "results_table.md").is_file()
    # largest first: m-a alone; m-b, then m-c + m-d
    assert shard["all_shards"] == [
        {"shard": "1/3", "estimated_cost": 18_000, "models": ["m-a"]},
        {"shard": "2/3", "estimated_cost": 10_000, "models": ["m-b"]},
        {"shard": "3/3", "estimated_cost": 10_000, "models": ["m-c", "m-d"]},
    ]


def test_shard_is_shown_in_the_header_and_the_rest_deselected(slm_pytester, four_models: list[str]) -> None:
    slm_pytester.pytester.makepyfile(TESTS)
    result = slm_pytester.run("--models", *four_models, "--precision", "bf16", "int4", "--slm-shard", "3/3", "--co")
    assert result.ret == 0
    # 4 models x 2 precisions x 3 engine tests + 1 without an engine; shard 3 holds m-c and m-d
    result.stdout.fnmatch_lines(["slm: shard 3/3: m-c m-d", "*collected 25 items / 13 deselected / 12 selected*"])


@pytest.mark.parametrize(("value", "env"), [("0/3", False), ("4/3", False), ("x", False), ("5/4", True)])
def test_bad_shard_is_a_usage_error_naming_value_and_source(
    slm_pytester, monkeypatch: pytest.MonkeyPatch, value: str, env: bool
) -> None:
    slm_pytester.pytester.makepyfile(TESTS)
    if env:
        monkeypatch.setenv("SLM_SHARD", value)
        result = slm_pytester.run()
        source = "environment variable SLM_SHARD"
    else:
        result = slm_pytester.run("--slm-shard", value)
        source = "--slm-shard"
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*pytest-slm: {source}: *{value!r}*"])


def test_more_shards_than_models_is_a_usage_error(slm_pytester, four_models: list[str]) -> None:
    slm_pytester.pytester.makepyfile(TESTS)
    result = slm_pytester.run("--models", *four_models[:2], "--slm-shard", "1/3")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*the matrix has 2 model(s) and a model is never split, so at most 2 shard(s)*"])


def test_config_models_shard_by_their_stated_size(slm_pytester, tmp_path: Path) -> None:
    # on disk both are tiny; the config's parameter counts decide (and then the check fails at load,
    # which is not this test's business: collection only)
    for name in ("one", "two", "three"):
        write_checkpoint(tmp_path / name, 1000)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(
        "models:\n"
        "  - {name: one, model: ./one, parameters: 7B, precisions: [bf16]}\n"
        "  - {name: two, model: ./two, parameters: 3B, precisions: [bf16, int4]}\n"
        "  - {name: three, model: ./three, parameters: 1B, precisions: [bf16]}\n"
    )
    slm_pytester.pytester.makepyfile(TESTS)
    result = slm_pytester.run(
        "--slm-models-config", str(cfg), "--models", "one", "two", "three", "--slm-shard", "2/2", "--co"
    )
    result.stdout.fnmatch_lines(["slm: shard 2/2: three two"])


def test_the_gate_family_spans_every_shard(slm_pytester, four_models: list[str], tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The false-alarm level holds for the pull request, not for each shard: a shard's comparisons are
    made at alpha over the whole split's gated entries (the other shards run the same tests on their
    models), so three shards of an unchanged run share one 5 %, not 15 %."""
    slm_pytester.pytester.makepyfile(TESTS.replace('"x_s"', '"ttft_p50_s"').replace('"y_s"', '"tpot_p50_s"'))
    root = str(tmp_path / "baselines")
    run_ids(slm_pytester, four_models, "--slm-baseline-dir", root, "--slm-save-baseline")
    # 4 models x 2 precisions x 3 engine tests x 1 gated figure; the engine-free test has no baseline
    whole, _, _ = run_ids(slm_pytester, four_models, "--slm-baseline-dir", root)
    whole.stdout.fnmatch_lines(["*family: 24 gated comparison(s), each at alpha 0.05/24*in this session"])
    shard, _, doc = run_ids(slm_pytester, four_models, "--slm-baseline-dir", root, "--slm-shard", "2/3")
    shard.stdout.fnmatch_lines(["*family: 24 gated comparison(s), each at alpha 0.05/24*across the 3 shards*"])
    alphas = [r["baseline"]["alpha"] for r in doc["records"] if r.get("baseline")]
    assert alphas and all(a == pytest.approx(0.05 / 24) for a in alphas)  # not 0.05/6, this shard's own share
    outputs = []
    for i in (1, 2, 3):
        out = slm_pytester.pytester.path / f"shard-{i}"
        run_ids(
            slm_pytester, four_models, "--slm-baseline-dir", root, "--slm-shard", f"{i}/3", "--slm-output", str(out)
        )
        outputs.append(str(out / "results.json"))
    printed = io.StringIO()
    assert cli.main(["report", *outputs, "--output-dir", str(tmp_path / "merged"), "--no-plots"], printed) == 0
    # per shard, the old family gave 6 + 6 + 12 comparisons at 0.05/6, 0.05/6 and 0.05/12: 0.15 in all
    assert "24 gated comparison(s) over 3 results file(s), per-comparison levels summing to 0.05:" in printed.getvalue()
