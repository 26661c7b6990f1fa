"""The ``openai`` engine: a model behind an OpenAI-compatible server, measured over HTTP.

Two modes, chosen by ``--slm-endpoint``:

- no endpoint: pytest-slm starts vLLM's OpenAI server itself for each model × precision, on the
  same converted or quantized checkpoint and with the same engine arguments the in-process engine
  uses (:mod:`pytest_slm.engines.openai.server`), and stops it when the cell's tests are done;
- ``--slm-endpoint URL``: the server at URL (any OpenAI-compatible server), used as it is; the
  precision in test ids is then only a label, and nothing is quantized locally.

Requests go through one asyncio event loop and one ``aiohttp`` session (connection reuse) owned
by the engine; the request functions are :mod:`pytest_slm.engines.openai.client`. The API key
is read from the environment variable ``--slm-api-key-env`` names, sent as a bearer token, and
redacted from every message this engine produces.

Besides :class:`~pytest_slm.engine_api.Engine` it has the capabilities ``Scorable``, ``LiveFacts``,
``PrecisionGated`` (:mod:`pytest_slm.engine_api`), ``Servable`` (:mod:`pytest_slm.serving.load`),
``MachineProbed`` (:mod:`pytest_slm.measure.machine`), ``ServedLocally``
(:mod:`pytest_slm.measure.validity`) and ``ChosenBySettings`` (:mod:`pytest_slm.engines.loading`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

from pytest_slm.checkpoints.resolve import Checkpoint
from pytest_slm.devices import DeviceChoice
from pytest_slm.engine_api import (
    BatchOutput,
    EngineSpec,
    Samplings,
    SamplingSpec,
    StreamTrace,
    TokenizerUnavailable,
    per_prompt,
)
from pytest_slm.engines.openai import client as oc
from pytest_slm.engines.openai import prom
from pytest_slm.engines.openai.server import ServerProcess, free_port, vllm_server_argv
from pytest_slm.engines.vllm import args as vllm_args
from pytest_slm.engines.vllm.engine import VLLMEngine
from pytest_slm.engines.vllm.facts import process_tree_peak_rss_bytes
from pytest_slm.measure.machine import Probe, probe
from pytest_slm.measure.validity import ServerProcesses, listening_server
from pytest_slm.precisions import Precision
from pytest_slm.record import Metric
from pytest_slm.serving.load import LoadSpec, PlannedRequest, ServedRequest, ServingRun, drive
from pytest_slm.serving.loopmon import LoopLagMonitor
from pytest_slm.settings import Settings

T = TypeVar("T")
#: files one of which a Hugging Face checkpoint with a tokenizer has
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")
#: seconds an idle pooled connection is kept (below the servers' own keep-alive timeouts)
KEEPALIVE_S = 2.0
#: concurrent requests when scoring or completing for accuracy (one lm-eval batch at a time)
ACCURACY_CONCURRENCY = 16


class EngineSetupError(RuntimeError):
    """The engine cannot be set up as configured (missing API key variable, no such model on the server)."""


def normalize_endpoint(url: str) -> str:
    """``http://host:port`` from what a user may write (a trailing ``/`` or ``/v1``)."""
    url = url.strip().rstrip("/")
    return url.removesuffix("/v1")


class OpenAIEngine:
    """A model served over the OpenAI API (see the module docstring). Construct, use, then :meth:`close`."""

    kind = "openai"

    @classmethod
    def for_settings(cls, settings: Settings) -> type[OpenAIEngine]:
        """The engine class for this session: an external endpoint needs no local quantization and
        no precision gating (the server decides what it serves)."""
        return ExternalOpenAIEngine if settings.endpoint else cls

    @classmethod
    def unsupported_reason(cls, precision: Precision, device: DeviceChoice, checkpoint: Path | None) -> str | None:
        """The server runs vLLM on this machine: the in-process engine's gating applies."""
        return VLLMEngine.unsupported_reason(precision, device, checkpoint)

    def __init__(self, spec: EngineSpec, checkpoint: Checkpoint, settings: Settings, device: DeviceChoice) -> None:
        import aiohttp

        self.spec = spec
        self.checkpoint = checkpoint
        self.settings = settings
        self.device = device
        self.api = settings.openai_api
        self.api_key_env = settings.api_key_env
        self._api_key = ""
        if self.api_key_env:
            self._api_key = os.environ.get(self.api_key_env, "")
            if not self._api_key:
                raise EngineSetupError(
                    f"{settings.sources.get('api_key_env', '--slm-api-key-env')} names the environment variable "
                    f"{self.api_key_env}, which is not set or empty"
                )
        self.headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        self.server: Any = None
        self.server_argv: list[str] = []
        self._tokenizer: Any = None
        self.facts: dict[str, Any] = {"api": self.api, "client": f"aiohttp {aiohttp.__version__}"}
        self.token_count_sources: dict[str, int] = {}
        self.managed = not settings.endpoint
        self.model = spec.model_name
        self._max_model_len: Any = None
        self.server_version: str | None = None
        self.vllm_extensions = False
        self._loop = asyncio.new_event_loop()
        self._session: Any = None
        try:
            self.base_url = normalize_endpoint(settings.endpoint) if settings.endpoint else self._start_server()
            self._run(self._open_session())
            self._probe()
        except BaseException:
            self.close()
            raise

    # -- plumbing -----------------------------------------------------------------------------
    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self._loop.run_until_complete(coro)

    def redact(self, text: str) -> str:
        return oc.redact(text, [self._api_key])

    async def _open_session(self) -> None:
        import aiohttp

        s = self.settings
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=s.request_timeout_s, sock_connect=10, sock_read=s.stall_timeout_s),
            # no pool limit: a concurrency level must never queue silently inside the client. Idle
            # connections are dropped before the server drops them (vLLM's uvicorn: 5 s): reusing one the
            # server is closing fails a request with "Server disconnected", and that is never retried.
            connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=KEEPALIVE_S),
        )

    def _start_server(self) -> str:
        env = dict(os.environ)
        environment = {} if self.device.on_cuda else vllm_args.prepare_cpu_environment(env)
        if self._api_key:
            env["VLLM_API_KEY"] = self._api_key  # not on the command line, where ps would show it
        kwargs = vllm_args.engine_kwargs(self.spec, self.checkpoint, self.settings, on_cuda=self.device.on_cuda)
        host, port = "127.0.0.1", free_port()
        self.server_argv = vllm_server_argv(kwargs, host=host, port=port, served_model_name=self.spec.model_name)
        log = Path(self.settings.output) / "servers" / f"{self.spec.id}-{port}.log"
        self.server = ServerProcess(
            self.server_argv, log_path=log, host=host, port=port, env=env, secrets=[self._api_key]
        )
        self.server.start()
        ready_s = self.server.wait_ready(self.settings.server_startup_timeout_s)
        self.facts.update(
            server_log=str(log),
            server_ready_s=ready_s,
            server_pid=self.server.proc.pid if self.server.proc else None,
            engine_args=vllm_args.reported_args(kwargs),
            environment=environment,
        )
        return str(self.server.url)

    def _check_server(self) -> None:
        """A managed server that died fails the caller with its log's last lines."""
        if self.server is not None:
            self.server.check()

    def _fail(self, results: Sequence[oc.RequestResult], what: str) -> None:
        errors = [r.error for r in results if r.error]
        if not errors:
            return
        self._check_server()
        more = f" ({len(errors)} of {len(results)} requests failed)" if len(results) > 1 else ""
        raise oc.EndpointError(
            self.redact(f"{what}{more}: {errors[0]}"), status=next((r.status for r in results if r.error), None)
        )

    def _probe(self) -> None:
        """Which model the server serves, its context length, and whether it speaks vLLM's extensions."""

        async def probe() -> tuple[tuple[int, Any], tuple[int, Any] | None]:
            models = await self._get("/v1/models")
            try:
                version = await self._get("/version")
            except Exception:
                version = None
            return models, version

        (status, body), version = self._run(probe())
        if status != 200 or not isinstance(body, dict):
            raise oc.EndpointError(
                self.redact(f"GET {self.base_url}/v1/models: HTTP {status}: {oc.excerpt(str(body))!r}"), status=status
            )
        cards = [c for c in body.get("data") or [] if isinstance(c, dict) and c.get("id")]
        if not cards:
            raise EngineSetupError(f"{self.base_url}/v1/models lists no model")
        wanted = {self.spec.model, self.spec.model_name, str(self.checkpoint.path)}
        match = [c for c in cards if c["id"] in wanted] or (cards if len(cards) == 1 else [])
        if not match:
            raise EngineSetupError(
                f"{self.base_url} serves {', '.join(c['id'] for c in cards)}; none is {self.spec.model!r} "
                "(name the served model in --models)"
            )
        card = match[0]
        self.model = str(card["id"])
        self._max_model_len = card.get("max_model_len")
        self.server_version = version[1].get("version") if version and isinstance(version[1], dict) else None
        # vLLM's server accepts ignore_eos/min_tokens/return_token_ids/prompt_logprobs; others may refuse them
        self.vllm_extensions = self.server_version is not None
        self.facts.update(endpoint=self.base_url, served_model=self.model, server_version=self.server_version)

    async def _get(self, path: str) -> tuple[int, Any]:
        for attempt in range(oc.CONNECT_ATTEMPTS):
            try:
                return await oc.get_json(self._session, self.base_url, path, self.headers)
            except Exception as exc:
                import aiohttp

                if not isinstance(exc, aiohttp.ClientConnectorError) or attempt + 1 == oc.CONNECT_ATTEMPTS:
                    raise oc.EndpointError(self.redact(f"GET {self.base_url}{path}: cannot connect: {exc}")) from None
                await asyncio.sleep(oc.CONNECT_BACKOFF_S[min(attempt, len(oc.CONNECT_BACKOFF_S) - 1)])
        raise AssertionError("unreachable")

    def _request(self, prompt: str | Sequence[int], sampling: SamplingSpec, **extra: Any) -> oc.Request:
        return oc.Request(
            prompt=prompt,
            max_tokens=sampling.max_new_tokens,
            model=self.model,
            temperature=sampling.temperature,
            ignore_eos=sampling.ignore_eos,
            vllm_extensions=self.vllm_extensions,
            extra=extra,
        )

    # -- generation -----------------------------------------------------------------------------
    async def stream_one(self, prompt: str, sampling: SamplingSpec) -> oc.RequestResult:
        """Stream one request on the engine's session (for the load generator)."""
        return await oc.stream_request(
            self._session, self.base_url, self._request(prompt, sampling), self.headers, api=self.api
        )

    def _trace(self, prompt: str, res: oc.RequestResult) -> StreamTrace:
        source = res.token_count_source
        prompt_tokens = res.prompt_tokens
        if prompt_tokens is None:
            prompt_tokens = len(self.tokenizer.encode(prompt))
            source = "tokenizer"
        self.token_count_sources[source] = self.token_count_sources.get(source, 0) + 1
        engine = dict(res.engine)
        if res.completion_tokens is not None:
            engine["usage_completion_tokens"] = float(res.completion_tokens)
        return StreamTrace(
            res.send_s, res.token_times_s, prompt_tokens, engine, text=res.text, token_ids=tuple(res.token_ids)
        )

    def stream(self, prompts: Sequence[str], sampling: Samplings) -> list[StreamTrace]:
        """Send every prompt at once (one streamed request each) and time each chunk as it arrives."""
        self._check_server()
        specs = per_prompt(sampling, len(prompts))

        async def all_() -> list[oc.RequestResult]:
            return list(await asyncio.gather(*(self.stream_one(p, s) for p, s in zip(prompts, specs, strict=True))))

        results = self._run(all_())
        self._fail(results, "streamed requests failed")
        return [self._trace(p, r) for p, r in zip(prompts, results, strict=True)]

    def generate(self, prompts: Sequence[str], sampling: Samplings) -> BatchOutput:
        """Every prompt at once as concurrent non-streamed completions; returns when all are done."""
        self._check_server()
        specs = per_prompt(sampling, len(prompts))
        results = self._run(
            self._post_all([self._payload(p, s, stream=False) for p, s in zip(prompts, specs, strict=True)])
        )
        self._fail(results, "completion requests failed")
        texts = [self._choice(r).get("text") or "" for r in results]
        ids = [tuple(self._choice(r).get("token_ids") or ()) for r in results]
        prompt_tokens = sum(
            r.prompt_tokens if r.prompt_tokens is not None else len(self.tokenizer.encode(p))
            for p, r in zip(prompts, results, strict=True)
        )
        output_tokens = sum(
            r.completion_tokens
            if r.completion_tokens is not None
            else len(self.tokenizer.encode(t, add_special_tokens=False))
            for r, t in zip(results, texts, strict=True)
        )
        return BatchOutput(len(results), prompt_tokens, output_tokens, tuple(texts), tuple(ids))

    def _payload(
        self, prompt: str | Sequence[int], sampling: SamplingSpec, *, stream: bool, **extra: Any
    ) -> dict[str, Any]:
        req = self._request(prompt, sampling, **extra)
        return (
            oc.completion_payload(req, stream=stream)
            if self.api == "completions" or not isinstance(prompt, str)
            else oc.chat_payload(req, stream=stream)
        )

    async def _post_all(self, payloads: Sequence[dict[str, Any]], limit: int | None = None) -> list[oc.RequestResult]:
        gate = asyncio.Semaphore(limit or len(payloads) or 1)
        path = "/v1/chat/completions" if "messages" in (payloads[0] if payloads else {}) else "/v1/completions"

        async def one(payload: dict[str, Any]) -> oc.RequestResult:
            async with gate:
                return await oc.post_json(self._session, self.base_url, path, payload, self.headers)

        return list(await asyncio.gather(*(one(p) for p in payloads)))

    @staticmethod
    def _choice(res: oc.RequestResult) -> dict[str, Any]:
        body = res.body if isinstance(res.body, dict) else {}
        choices = body.get("choices") or [{}]
        return dict(choices[0])

    def serve(self, plans: Sequence[PlannedRequest], load: LoadSpec) -> ServingRun:
        """Serve a load level (:mod:`pytest_slm.serving.load`) on this engine's event loop, with the
        loop's lag measured throughout and the server's counters scraped before and after."""
        self._check_server()

        async def run() -> tuple[
            list[tuple[int, float, oc.RequestResult]], dict[str, Any], dict[str, float] | None, dict[str, float] | None
        ]:
            before = await self._scrape()
            async with LoopLagMonitor() as mon:
                results = await drive(
                    load, len(plans), lambda i, _intended: self.stream_one(plans[i].prompt, plans[i].sampling)
                )
            after = await self._scrape()
            return results, mon.summary(), before, after

        results, lag, before, after = self._run(run())
        served = []
        for i, intended, res in results:
            if res.error:
                served.append(ServedRequest(i, intended, None, self.redact(res.error), res.token_count_source))
            else:
                trace = self._trace(plans[i].prompt, res)
                source = res.token_count_source if res.prompt_tokens is not None else "tokenizer"
                served.append(ServedRequest(i, intended, trace, "", source))
        if any(not s.ok for s in served):
            self._check_server()
        starts = [r.send_s for _, _, r in results]
        ends = [r.done_s for _, _, r in results]
        wall = (max(ends) - min(starts)) if starts else 0.0
        return ServingRun(
            load,
            tuple(served),
            wall,
            client=f"one asyncio event loop, {self.facts['client']} session with connection reuse",
            planned=len(plans),
            loop_lag=lag,
            skew_is_client=True,
            server_metrics=prom.delta(before, after) if before is not None and after is not None else {},
        )

    async def _scrape(self) -> dict[str, float] | None:
        """The server's Prometheus counters, or None where it exports none."""
        try:
            status, body = await oc.get_json(self._session, self.base_url, "/metrics", self.headers)
        except Exception:
            return None
        if status != 200 or not isinstance(body, str):
            return None
        parsed = prom.parse(body)
        return parsed or None

    # -- scoring, for accuracy (lm-eval) ----------------------------------------------------------
    @property
    def tokenizer(self) -> Any:
        """The model's Hugging Face tokenizer, from the local checkpoint."""
        if self._tokenizer is None:
            path = Path(self.checkpoint.path)
            if not any((path / name).exists() for name in TOKENIZER_FILES):
                raise TokenizerUnavailable(f"no tokenizer in {path} (none of {', '.join(TOKENIZER_FILES)})")
            from transformers import AutoTokenizer

            try:
                self._tokenizer = AutoTokenizer.from_pretrained(str(self.checkpoint.path))
            except Exception as exc:
                raise TokenizerUnavailable(f"no tokenizer in {self.checkpoint.path}: {exc}") from exc
        return self._tokenizer

    @property
    def max_model_len(self) -> int:
        if self._max_model_len:
            return int(self._max_model_len)
        return int(self.settings.max_model_len or vllm_args.CPU_DEFAULT_MAX_MODEL_LEN)

    def score(self, token_prompts: Sequence[Sequence[int]]) -> list[list[tuple[float, int]]]:
        """For each prompt, (log p(token_i | tokens_<i), argmax token id) for i = 1..n-1, from the
        server's prompt logprobs (vLLM's ``prompt_logprobs``). A server without them makes the
        log-likelihood tasks skip with that reason."""
        if not self.vllm_extensions:
            from pytest_slm.accuracy.evaluate import TaskUnavailable

            raise TaskUnavailable(
                f"the server at {self.base_url} is not vLLM: no prompt logprobs for log-likelihood tasks"
            )
        self._check_server()
        greedy = SamplingSpec(max_new_tokens=1, ignore_eos=False)
        payloads = [self._payload(list(p), greedy, stream=False, prompt_logprobs=1) for p in token_prompts]
        for payload in payloads:
            payload.pop("min_tokens", None)
        results = self._run(self._post_all(payloads, ACCURACY_CONCURRENCY))
        refused = [r for r in results if r.status is not None and 400 <= r.status < 500]
        if refused:
            from pytest_slm.accuracy.evaluate import TaskUnavailable

            raise TaskUnavailable(self.redact(f"the server refused prompt logprobs: {refused[0].error}"))
        self._fail(results, "scoring requests failed")
        out = []
        for prompt, res in zip(token_prompts, results, strict=True):
            rows = self._choice(res).get("prompt_logprobs") or []
            if len(rows) != len(prompt):
                raise oc.EndpointError(f"{self.base_url}: {len(rows)} prompt logprobs for a {len(prompt)}-token prompt")
            scored = []
            for tok, dist in zip(prompt[1:], rows[1:], strict=True):
                if not dist or str(tok) not in dist:
                    raise oc.EndpointError(f"{self.base_url}: no logprob for prompt token {tok}")
                top = min(dist.items(), key=lambda kv: kv[1].get("rank") or 1 << 30)[0]
                scored.append((float(dist[str(tok)]["logprob"]), int(top)))
            out.append(scored)
        return out

    def complete(
        self, token_prompts: Sequence[Sequence[int]], *, max_tokens: int, stop: Sequence[str], temperature: float = 0.0
    ) -> list[str]:
        """Generate up to ``max_tokens`` after each token prompt (as token ids), stopping at any of ``stop``."""
        self._check_server()
        spec = SamplingSpec(max_new_tokens=max_tokens, ignore_eos=False, temperature=temperature)
        payloads = []
        for p in token_prompts:
            payload = self._payload(list(p), spec, stream=False)
            if stop:
                payload["stop"] = list(stop)
            payloads.append(payload)
        results = self._run(self._post_all(payloads, ACCURACY_CONCURRENCY))
        self._fail(results, "completion requests failed")
        return [str(self._choice(r).get("text") or "") for r in results]

    # -- facts ----------------------------------------------------------------------------------
    def machine_probe(self) -> Probe | None:
        """The reference kernel timed on this engine's device (:mod:`pytest_slm.measure.machine`);
        None for an endpoint this session did not start: the kernel would time the client's
        machine, not the server's."""
        if not self.managed:
            return None
        return probe("cuda" if self.device.on_cuda else "cpu")

    def server_processes(self) -> ServerProcesses:
        """The server's processes, whose CPU time a measurement window counts as its own
        (:class:`pytest_slm.measure.validity.ServedLocally`): the managed server's pid (a child of
        this process, counted with its tree anyway), else whatever listens on the endpoint's port
        when the endpoint is on this machine. Looked up again for each window: a server restarted
        by hand between windows is found."""
        proc = self.server.proc if self.server is not None else None
        if proc is not None:
            return ServerProcesses((proc.pid,), f"managed server pid {proc.pid} (port {self.server.port})")
        return listening_server(self.base_url)

    def memory_metrics(self) -> list[Metric]:
        """Peak resident memory of the managed server's process tree; nothing for an external server
        (HTTP does not say; ``describe()["memory"]`` gives the reason)."""
        if self.server is None or self.server.proc is None or not self.server.alive():
            return []
        tree = process_tree_peak_rss_bytes(self.server.proc.pid)
        note = "sum of VmHWM over the vLLM server's processes (API server and engine core); includes the KV cache"
        return [Metric("peak_rss_bytes", sum(tree.values()), "B", False, info={"processes": tree, "note": note})]

    #: facts that fill in as requests are served (the fixture keeps them live in the report)
    live_facts = ("token_count_source",)

    def describe(self) -> dict[str, Any]:
        desc = {
            **self.facts,
            "engine": self.kind,
            "managed_server": self.managed,
            "server_argv": self.server_argv,
            "api_key_env": self.api_key_env,
            "api_key": "set" if self._api_key else "none",
            "vllm_extensions": self.vllm_extensions,
            # the live tally (source -> requests): facts taken at load time fill in as requests are served
            "token_count_source": self.token_count_sources,
            "memory": "peak RSS of the server's process tree"
            if self.managed
            else "not measurable through HTTP (an external server): memory tests record nothing",
            "device_choice": self.device.describe(),
        }
        if not self.vllm_extensions:
            desc["note"] = "not a vLLM server: ignore_eos is not sent, so output lengths may stop early at EOS"
        return desc

    def close(self) -> None:
        session, self._session = self._session, None
        if session is not None and not self._loop.is_closed():
            with contextlib.suppress(Exception):
                self._loop.run_until_complete(session.close())
        if not self._loop.is_closed():
            self._loop.close()
        server, self.server = self.server, None
        if server is not None:
            self.facts["server_exit_status"] = server.stop()
            self.facts["server_stopped_at"] = time.time()


class ExternalOpenAIEngine(OpenAIEngine):
    """The ``openai`` engine on a server the user runs (``--slm-endpoint``)."""

    #: the server serves its own weights: nothing to quantize here
    needs_quantized_checkpoint = False

    @classmethod
    def unsupported_reason(cls, precision: Precision, device: DeviceChoice, checkpoint: Path | None) -> str | None:
        return None
