"""HTTP requests to an OpenAI-compatible server, one async function per API. Pytest-free.

Each request function takes an ``aiohttp.ClientSession`` (shared: connection reuse) and a
:class:`Request`, and returns a plain :class:`RequestResult`: the client-clock time the request
was sent, the time each streamed chunk arrived and how many tokens it carried, the server's
``usage`` counts, the engine's own per-request timings where the server sends them, and an error
text (HTTP status and a body excerpt) when it failed. The load generator, the SLO maths and the
server process live elsewhere (``pytest_slm.serving``).

Timing honesty: the send time is taken just before the request is handed to the connection; a
chunk's time is taken when its bytes are read, before any JSON decoding. Only connection
establishment is retried (nothing was sent yet); a request that may have been partly served is
never retried, so no timing hides a second attempt.
"""

from __future__ import annotations

import asyncio
import codecs
import json
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

#: bytes of an error body quoted in an error message
BODY_EXCERPT_CHARS = 400
#: connection attempts for one request (only "could not connect" is retried)
CONNECT_ATTEMPTS = 3
CONNECT_BACKOFF_S = (0.2, 0.5)


class EndpointError(RuntimeError):
    """A request the server refused or broke: the message has the URL, the HTTP status and a body excerpt."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def redact(text: str, secrets: Sequence[str]) -> str:
    """``text`` with every secret (an API key) replaced, so no message or log can carry it."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "<redacted>")
    return text


@dataclass(frozen=True)
class Request:
    """One request: the prompt (text or token ids), how many tokens, and the wire flavour."""

    prompt: str | Sequence[int]
    max_tokens: int
    model: str
    temperature: float = 0.0
    ignore_eos: bool = True
    stop: Sequence[str] = ()
    #: vLLM extensions (ignore_eos, min_tokens, return_token_ids, prompt_logprobs): sent only to servers
    #: that accept them
    vllm_extensions: bool = True
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class RequestResult:
    """What one request produced, timed on the client clock (``time.perf_counter``)."""

    send_s: float = 0.0
    done_s: float = 0.0
    chunk_times_s: list[float] = field(default_factory=list)
    #: tokens carried by each chunk (from ``token_ids``); empty when the server does not say
    chunk_tokens: list[int] = field(default_factory=list)
    token_ids: list[int] = field(default_factory=list)
    text: str = ""
    prompt_tokens: int | None = None  # from usage
    completion_tokens: int | None = None  # from usage
    #: the engine's own view from the server's per-request metrics (vLLM --enable-per-request-metrics)
    engine: dict[str, float] = field(default_factory=dict)
    finish_reason: str | None = None
    status: int | None = None
    error: str = ""
    connect_attempts: int = 0
    body: Any = None  # the decoded JSON body of a non-streamed response

    @property
    def ok(self) -> bool:
        return not self.error

    @property
    def token_times_s(self) -> tuple[float, ...]:
        """One arrival time per output token when the chunks carried token ids, else one per chunk."""
        if self.chunk_tokens and len(self.chunk_tokens) == len(self.chunk_times_s):
            return tuple(t for t, n in zip(self.chunk_times_s, self.chunk_tokens, strict=True) for _ in range(n))
        return tuple(self.chunk_times_s)

    @property
    def token_count_source(self) -> str:
        """Where the output token count comes from: the server's usage, per-chunk token ids, or chunks."""
        if self.completion_tokens is not None:
            return "usage"
        if self.chunk_tokens:
            return "token_ids"
        return "chunks"


class SSEParser:
    """Server-sent events from a byte stream: ``feed(bytes)`` yields each event's data string.

    Events end with a blank line (``\\n\\n`` or ``\\r\\n\\r\\n``); ``data:`` lines of one event are
    joined with newlines; comment lines (``:ping``) and other fields are skipped."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self._buffer = ""

    def feed(self, chunk: bytes) -> Iterator[str]:
        self._buffer += self._decoder.decode(chunk).replace("\r\n", "\n")
        while "\n\n" in self._buffer:
            event, self._buffer = self._buffer.split("\n\n", 1)
            data = [line[5:].removeprefix(" ") for line in event.split("\n") if line.startswith("data:")]
            if data:
                yield "\n".join(data)

    @property
    def pending(self) -> str:
        """Bytes received after the last complete event (a stream cut mid-event leaves them here)."""
        return self._buffer


def excerpt(body: str | bytes, limit: int = BODY_EXCERPT_CHARS) -> str:
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "…"


def completion_payload(req: Request, *, stream: bool) -> dict[str, Any]:
    """The JSON body of a ``/v1/completions`` request."""
    payload: dict[str, Any] = {
        "model": req.model,
        "prompt": req.prompt if isinstance(req.prompt, str) else list(req.prompt),
        "max_tokens": req.max_tokens,
        "temperature": req.temperature,
        "stream": stream,
    }
    if req.stop:
        payload["stop"] = list(req.stop)
    if stream:
        payload["stream_options"] = {"include_usage": True}
    if req.vllm_extensions:
        if req.ignore_eos:
            payload["ignore_eos"] = True
            payload["min_tokens"] = req.max_tokens
        payload["return_token_ids"] = True
    payload.update(req.extra)
    return payload


def chat_payload(req: Request, *, stream: bool) -> dict[str, Any]:
    """The JSON body of a ``/v1/chat/completions`` request (the prompt as one user message)."""
    if not isinstance(req.prompt, str):
        raise TypeError("the chat API takes text prompts, not token ids")
    payload = completion_payload(req, stream=stream)
    del payload["prompt"]
    payload["messages"] = [{"role": "user", "content": req.prompt}]
    return payload


async def _post(
    session: Any, url: str, payload: Mapping[str, Any], headers: Mapping[str, str], result: RequestResult
) -> Any:
    """``session.post`` with bounded retries of connection establishment only; sets ``send_s``."""
    import aiohttp

    for attempt in range(CONNECT_ATTEMPTS):
        result.connect_attempts = attempt + 1
        result.send_s = time.perf_counter()
        try:
            return await session.post(url, json=payload, headers=dict(headers))
        except aiohttp.ClientConnectorError as exc:  # refused / unreachable: nothing was sent
            if attempt + 1 == CONNECT_ATTEMPTS:
                raise EndpointError(f"POST {url}: cannot connect after {CONNECT_ATTEMPTS} attempts: {exc}") from None
            await asyncio.sleep(CONNECT_BACKOFF_S[min(attempt, len(CONNECT_BACKOFF_S) - 1)])
    raise AssertionError("unreachable")


async def _fail_on_status(response: Any, url: str) -> None:
    if response.status != 200:
        body = await response.read()
        raise EndpointError(
            f"POST {url}: HTTP {response.status} {response.reason or ''}: {excerpt(body)!r}".replace("  ", " "),
            status=response.status,
        )


def _usage(result: RequestResult, usage: Mapping[str, Any] | None) -> None:
    if not usage:
        return
    if usage.get("prompt_tokens") is not None:
        result.prompt_tokens = int(usage["prompt_tokens"])
    if usage.get("completion_tokens") is not None:
        result.completion_tokens = int(usage["completion_tokens"])


def engine_view(metrics: Mapping[str, Any] | None) -> dict[str, float]:
    """vLLM's per-request metrics (``--enable-per-request-metrics``) in the keys ``StreamTrace.engine``
    uses: ``ttft_s`` is first token − queued (vLLM's ``time_to_first_token_ms`` counts from
    scheduling, so its queue time is added back), ``tpot_s`` is its mean ITL."""
    if not metrics:
        return {}
    out: dict[str, float] = {}
    ttft, queue = metrics.get("time_to_first_token_ms"), metrics.get("queue_time_ms")
    if ttft is not None:
        out["ttft_s"] = (float(ttft) + float(queue or 0.0)) / 1000
        out["prefill_s"] = float(ttft) / 1000
    if queue is not None:
        out["queue_s"] = float(queue) / 1000
    if metrics.get("mean_itl_ms") is not None:
        out["tpot_s"] = float(metrics["mean_itl_ms"]) / 1000
    return out


async def stream_request(
    session: Any, base_url: str, req: Request, headers: Mapping[str, str], *, api: str = "completions"
) -> RequestResult:
    """Stream one request (``api``: ``completions`` or ``chat``); never raises: failures land in
    ``result.error`` with the HTTP status and a body excerpt."""
    import aiohttp

    path = "/v1/completions" if api == "completions" else "/v1/chat/completions"
    url = base_url.rstrip("/") + path
    payload = completion_payload(req, stream=True) if api == "completions" else chat_payload(req, stream=True)
    result = RequestResult()
    parser = SSEParser()
    done = False
    try:
        response = await _post(session, url, payload, headers, result)
        async with response:
            result.status = response.status
            await _fail_on_status(response, url)
            async for raw in response.content.iter_any():
                now = time.perf_counter()
                for data in parser.feed(raw):
                    if data.strip() == "[DONE]":
                        done = True
                        continue
                    try:
                        event = json.loads(data)
                    except json.JSONDecodeError:
                        n = len(result.chunk_times_s)
                        raise EndpointError(
                            f"POST {url}: malformed SSE event after {n} chunks: {excerpt(data)!r}",
                            status=response.status,
                        ) from None
                    if not isinstance(event, dict):
                        raise EndpointError(f"POST {url}: SSE event is not an object: {excerpt(data)!r}")
                    if "error" in event:
                        raise EndpointError(
                            f"POST {url}: the server reported an error mid-stream: {excerpt(json.dumps(event))!r}",
                            status=response.status,
                        )
                    _on_event(result, event, now, api)
            if not done:
                raise EndpointError(
                    f"POST {url}: the stream ended before [DONE] after {len(result.chunk_times_s)} chunks"
                    + (f"; unterminated data: {excerpt(parser.pending)!r}" if parser.pending.strip() else ""),
                    status=response.status,
                )
    except EndpointError as exc:
        result.error = str(exc)
    except aiohttp.SocketTimeoutError:
        n = len(result.chunk_times_s)
        result.error = f"POST {url}: the stream stalled (no bytes within the read timeout) after {n} chunks"
    except (TimeoutError, asyncio.TimeoutError):
        n, took = len(result.chunk_times_s), time.perf_counter() - result.send_s
        result.error = f"POST {url}: the request timed out after {took:.1f} s ({n} chunks received)"
    except aiohttp.ClientError as exc:
        result.error = (
            f"POST {url}: the connection broke after {len(result.chunk_times_s)} chunks: {type(exc).__name__}: {exc}"
        )
    result.done_s = time.perf_counter()
    return result


def _on_event(result: RequestResult, event: Mapping[str, Any], now: float, api: str) -> None:
    _usage(result, event.get("usage"))
    if event.get("metrics"):
        result.engine.update(engine_view(event["metrics"]))
    for choice in event.get("choices") or ():
        if choice.get("finish_reason"):
            result.finish_reason = choice["finish_reason"]
        text = (choice.get("delta") or {}).get("content") if api == "chat" else choice.get("text")
        ids = choice.get("token_ids")
        if ids is not None:
            if not ids:
                continue  # a chunk that only carries the finish reason
            result.chunk_times_s.append(now)
            result.chunk_tokens.append(len(ids))
            result.token_ids.extend(int(i) for i in ids)
            result.text += text or ""
        elif text:
            result.chunk_times_s.append(now)
            result.text += text


async def post_json(
    session: Any, base_url: str, path: str, payload: Mapping[str, Any], headers: Mapping[str, str]
) -> RequestResult:
    """A non-streamed POST; the decoded body in ``result.body``. Failures in ``result.error``."""
    import aiohttp

    url = base_url.rstrip("/") + path
    result = RequestResult()
    try:
        response = await _post(session, url, payload, headers, result)
        async with response:
            result.status = response.status
            await _fail_on_status(response, url)
            raw = await response.read()
            result.done_s = time.perf_counter()
            try:
                result.body = json.loads(raw)
            except json.JSONDecodeError:
                raise EndpointError(f"POST {url}: the body is not JSON: {excerpt(raw)!r}", status=200) from None
            if isinstance(result.body, dict):
                _usage(result, result.body.get("usage"))
    except EndpointError as exc:
        result.error = str(exc)
    except (TimeoutError, asyncio.TimeoutError):
        result.error = f"POST {url}: the request timed out after {time.perf_counter() - result.send_s:.1f} s"
    except aiohttp.ClientError as exc:
        result.error = f"POST {url}: the connection broke: {type(exc).__name__}: {exc}"
    result.done_s = result.done_s or time.perf_counter()
    return result


async def get_json(session: Any, base_url: str, path: str, headers: Mapping[str, str]) -> tuple[int, Any]:
    """GET ``path``: (status, decoded JSON or the text). Connection errors propagate."""
    async with session.get(base_url.rstrip("/") + path, headers=dict(headers)) as response:
        raw = await response.read()
        try:
            return response.status, json.loads(raw)
        except json.JSONDecodeError:
            return response.status, raw.decode("utf-8", "replace")
