"""The wheel carries every file of the package: code, ``py.typed`` and the data read at run time
(``accuracy/data``: the multiple-choice set, the perplexity corpus, the GSM8K subset and its licence;
``data/`` if present). A file missing here is a default task a ``pip install pytest-slm`` user loses."""

from __future__ import annotations

from pathlib import Path

from tests.wheel_build import build_wheel, package_files, wheel_package_files


def test_wheel_holds_every_package_file(tmp_path: Path) -> None:
    expected = package_files()
    data = {f for f in expected if "/data/" in f}
    # the data the package reads at run time is really part of the expectation
    assert {
        "pytest_slm/accuracy/data/slm_mc.jsonl",
        "pytest_slm/accuracy/data/slm_ppl_default.txt",
        "pytest_slm/accuracy/data/gsm8k/LICENSE",
        "pytest_slm/accuracy/data/gsm8k/test_first100.jsonl",
        "pytest_slm/accuracy/data/gsm8k/train_first500.jsonl",
    } <= data
    got = wheel_package_files(build_wheel(tmp_path))
    assert sorted(expected - got) == [], "files of the package missing from the wheel"
    assert sorted(got - expected) == [], "files in the wheel that the package does not have"
