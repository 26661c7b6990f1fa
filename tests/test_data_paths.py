"""Data paths: which dataset-loading failures skip a task, and where ``gsm8k_local`` reads its items.

The skip side uses the real clients: ``datasets`` in offline mode, ``huggingface_hub`` without a
cache entry, and ``datasets`` turning the hub's "repository not found" into its own error.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

datasets = pytest.importorskip("datasets")
huggingface_hub = pytest.importorskip("huggingface_hub")

from pytest_slm.accuracy.evaluate import _is_data_unavailable  # noqa: E402
from pytest_slm.accuracy.tasks import GSM8K_SHIPPED, GSM8KDataError, corpus_jsonl, gsm8k_files  # noqa: E402


def raised(call) -> BaseException:  # type: ignore[no-untyped-def]
    with pytest.raises(BaseException) as info:
        call()
    return info.value


# --- what skips: the clients' own "cannot be loaded here" errors -----------------------------


def test_datasets_offline_mode_is_unavailable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    exc = raised(lambda: datasets.load_dataset("no-such-org/no-such-dataset", cache_dir=str(tmp_path)))
    assert type(exc) is ConnectionError and "Couldn't reach" in str(exc)
    assert _is_data_unavailable(exc)


def test_hub_file_not_in_the_local_cache_is_unavailable(tmp_path: Path) -> None:
    from huggingface_hub.errors import LocalEntryNotFoundError

    exc = raised(
        lambda: huggingface_hub.hf_hub_download(
            "no-such-org/no-such-dataset", "README.md", repo_type="dataset", cache_dir=tmp_path, local_files_only=True
        )
    )
    assert isinstance(exc, LocalEntryNotFoundError)
    assert _is_data_unavailable(exc)


def test_dataset_not_found_on_the_hub_is_unavailable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import httpx
    from datasets.exceptions import DatasetNotFoundError
    from huggingface_hub.errors import RepositoryNotFoundError

    def not_found(self, repo_id, *args, **kwargs):  # type: ignore[no-untyped-def]
        request = httpx.Request("GET", f"https://huggingface.co/datasets/{repo_id}")
        raise RepositoryNotFoundError("404 Repository Not Found", response=httpx.Response(404, request=request))

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.HfApi, "hf_hub_download", not_found)
    exc = raised(lambda: datasets.load_dataset("no-such-org/no-such-dataset", cache_dir=str(tmp_path)))
    assert isinstance(exc, DatasetNotFoundError)  # datasets' own wrapping of the hub's 404
    assert _is_data_unavailable(exc)


def test_hub_offline_mode_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub.errors import OfflineModeIsEnabled

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    exc = raised(lambda: huggingface_hub.HfApi().dataset_info("no-such-org/no-such-dataset"))
    assert isinstance(exc, OfflineModeIsEnabled)
    assert _is_data_unavailable(exc)


def test_no_connection_to_the_hub_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    import httpx

    with socket.socket() as s:  # a port nobody listens on: connection refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    api = huggingface_hub.HfApi(endpoint=f"http://127.0.0.1:{port}")
    exc = raised(lambda: api.dataset_info("no-such-org/no-such-dataset"))
    assert isinstance(exc, httpx.ConnectError)
    assert _is_data_unavailable(exc)


def test_repository_not_found_is_unavailable() -> None:
    import httpx
    from huggingface_hub.errors import RepositoryNotFoundError
    from huggingface_hub.utils import hf_raise_for_status

    request = httpx.Request("GET", "https://huggingface.co/api/datasets/no-such-org/no-such-dataset")
    response = httpx.Response(404, headers={"X-Error-Code": "RepoNotFound"}, request=request)
    exc = raised(lambda: hf_raise_for_status(response))
    assert isinstance(exc, RepositoryNotFoundError)
    assert _is_data_unavailable(exc)


def test_unavailable_error_wrapped_with_raise_from_is_unavailable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    inner = raised(lambda: datasets.load_dataset("no-such-org/no-such-dataset", cache_dir=str(tmp_path)))

    def wrap() -> None:
        raise RuntimeError("task setup failed") from inner

    assert _is_data_unavailable(raised(wrap))


# --- what fails with its traceback -------------------------------------------------------------


def test_file_not_found_from_our_own_code_is_not_unavailable(tmp_path: Path) -> None:
    exc = raised(lambda: corpus_jsonl(tmp_path / "missing.txt", tmp_path))
    assert isinstance(exc, FileNotFoundError)
    assert not _is_data_unavailable(exc)


def test_missing_local_data_file_is_not_unavailable(tmp_path: Path) -> None:
    """A task whose own JSON file is missing is a broken task (``datasets`` raises a plain
    ``FileNotFoundError``), not a dataset the hub cannot serve."""
    exc = raised(lambda: datasets.load_dataset("json", data_files={"test": str(tmp_path / "nope.jsonl")}))
    assert isinstance(exc, FileNotFoundError)
    assert not _is_data_unavailable(exc)


def test_a_bug_that_says_offline_is_not_unavailable() -> None:
    def bug() -> None:
        raise RuntimeError("engine offline: the worker process died")

    assert not _is_data_unavailable(raised(bug))


def test_connection_error_outside_the_data_clients_is_not_unavailable() -> None:
    def engine_rpc() -> None:
        raise ConnectionError("Couldn't reach the engine core process")

    assert not _is_data_unavailable(raised(engine_rpc))


def test_error_raised_while_handling_a_hub_error_is_not_unavailable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)

    def handler_bug() -> None:
        try:
            datasets.load_dataset("no-such-org/no-such-dataset", cache_dir=str(tmp_path))
        except ConnectionError:
            raise KeyError("bug in the fallback")  # noqa: B904 - the implicit context is the point

    exc = raised(handler_bug)
    assert isinstance(exc.__context__, ConnectionError)
    assert not _is_data_unavailable(exc)


# --- where gsm8k_local reads its items -----------------------------------------------------------


def _lines(path: str) -> list[dict[str, str]]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def test_gsm8k_subset_ships_with_the_package() -> None:
    files = gsm8k_files(None)
    assert Path(files["test"]).parent == GSM8K_SHIPPED.resolve()
    test, train = _lines(files["test"]), _lines(files["train"])
    assert len(test) == 100 and len(train) == 500
    assert all(set(row) == {"question", "answer"} and "\n#### " in row["answer"] for row in test + train)
    assert test[0]["question"].startswith("Janet\u2019s ducks lay 16 eggs per day")  # the test split's first item
    assert test[0]["answer"].endswith("#### 18")
    license_text = (GSM8K_SHIPPED / "LICENSE").read_text()
    assert "MIT License" in license_text and "Copyright (c) 2021 OpenAI" in license_text


def test_local_data_dir_overrides_the_shipped_subset(tmp_path: Path) -> None:
    folder = tmp_path / "gsm8k"
    folder.mkdir()
    for name in ("train.jsonl", "test_first1000.jsonl", "test_first10.jsonl"):
        (folder / name).write_text('{"question": "q", "answer": "a\\n#### 1"}\n')
    files = gsm8k_files(tmp_path)
    assert files == {"train": str(folder / "train.jsonl"), "test": str(folder / "test_first1000.jsonl")}
    (folder / "test.jsonl").write_text('{"question": "q", "answer": "a\\n#### 1"}\n')
    assert gsm8k_files(tmp_path)["test"] == str(folder / "test.jsonl")


def test_local_data_dir_without_gsm8k_uses_the_shipped_subset(tmp_path: Path) -> None:
    assert gsm8k_files(tmp_path) == gsm8k_files(None)


def test_incomplete_gsm8k_folder_is_an_error_not_a_fallback(tmp_path: Path) -> None:
    (tmp_path / "gsm8k").mkdir()
    (tmp_path / "gsm8k" / "test.jsonl").write_text("{}\n")
    with pytest.raises(GSM8KDataError, match=r"has no GSM8K train split: expected train.jsonl"):
        gsm8k_files(tmp_path)
