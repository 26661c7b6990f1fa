"""An OpenAI-compatible fake server on loopback, for the openai engine's error paths.

Unit tests only: it streams made-up tokens with a fixed delay; no figure it produces is ever a
benchmark. ``FakeOpenAIServer(mode=...)`` runs an aiohttp web app on its own thread and event
loop; ``mode`` picks how ``/v1/completions`` behaves:

- ``ok``: one chunk per token (with ``token_ids``), a usage chunk with vLLM-style per-request
  metrics, then ``[DONE]``; ``slow`` the same with a longer delay per token
- ``no_usage``: like ok, but no usage chunk and no token ids (a minimal OpenAI-compatible server)
- ``malformed``: one good chunk, then an event whose data is not JSON
- ``broken``: two chunks, then the connection is cut (no ``[DONE]``)
- ``stall``: one chunk, then nothing
- ``error500``: HTTP 500 with a text body; ``hang``: never answers (a request timeout)
- ``die_after``: serves ``die_after_requests`` requests, then refuses everything (503)

With ``api_key`` set, every endpoint but ``/health`` wants ``Authorization: Bearer <key>`` and
answers 401 otherwise, echoing the header it got (so a test can check that the key never leaks
into reports).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

from aiohttp import web

MODEL = "fake-model"


class FakeOpenAIServer:
    """``with FakeOpenAIServer(mode="ok") as srv: srv.url``."""

    def __init__(
        self,
        mode: str = "ok",
        *,
        token_delay_s: float = 0.002,
        api_key: str | None = None,
        die_after_requests: int = 0,
        with_version: bool = True,
    ) -> None:
        self.mode = mode
        self.token_delay_s = token_delay_s
        self.api_key = api_key
        self.die_after_requests = die_after_requests
        self.with_version = with_version
        self.requests: list[dict[str, Any]] = []
        self.auth_headers: list[str] = []
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self.generated_tokens = 0
        self.prompt_tokens = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- life cycle ---------------------------------------------------------------------------
    def __enter__(self) -> FakeOpenAIServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_get("/health", self.health)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/version", self.version)
        app.router.add_get("/metrics", self.metrics)
        app.router.add_post("/v1/completions", self.completions)
        app.router.add_post("/v1/chat/completions", self.completions)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    # -- endpoints ----------------------------------------------------------------------------
    def _denied(self, request: web.Request) -> web.Response | None:
        if self.api_key is None:
            return None
        got = request.headers.get("Authorization", "")
        self.auth_headers.append(got)
        if got != f"Bearer {self.api_key}":
            body = {"error": {"message": f"bad credentials: got header {got!r}", "type": "auth"}}
            return web.json_response(body, status=401)
        return None

    async def health(self, request: web.Request) -> web.Response:
        return web.Response(text="")

    async def models(self, request: web.Request) -> web.Response:
        denied = self._denied(request)
        if denied is not None:
            return denied
        return web.json_response({"object": "list", "data": [{"id": MODEL, "object": "model", "max_model_len": 512}]})

    async def version(self, request: web.Request) -> web.Response:
        if not self.with_version:
            return web.Response(status=404, text="not found")
        return web.json_response({"version": "0.0-fake"})

    async def metrics(self, request: web.Request) -> web.Response:
        text = (
            "# TYPE vllm:generation_tokens counter\n"
            f'vllm:generation_tokens_total{{model_name="{MODEL}"}} {self.generated_tokens}\n'
            "# TYPE vllm:prompt_tokens counter\n"
            f'vllm:prompt_tokens_total{{model_name="{MODEL}"}} {self.prompt_tokens}\n'
        )
        return web.Response(text=text, content_type="text/plain")

    async def completions(self, request: web.Request) -> web.StreamResponse:
        arrived = time.perf_counter()
        denied = self._denied(request)
        if denied is not None:
            return denied
        body = await request.json()
        self.requests.append(body)
        mode = self.mode
        if mode == "die_after" and len(self.requests) > self.die_after_requests:
            return web.Response(status=503, text="server is shutting down")
        if mode == "error500":
            return web.Response(status=500, text="internal kaboom: the fake engine fell over")
        if mode == "hang":
            await asyncio.sleep(3600)
        prompt = body.get("prompt") or body.get("messages", [{}])[-1].get("content", "")
        n_prompt = len(prompt) if isinstance(prompt, list) else len(str(prompt).split())
        n_out = int(body.get("max_tokens") or 16)
        if not body.get("stream"):
            self.prompt_tokens += n_prompt
            self.generated_tokens += n_out
            choice: dict[str, Any] = {"index": 0, "text": " tok" * n_out, "finish_reason": "length"}
            if body.get("prompt_logprobs") is not None and isinstance(prompt, list):
                choice["prompt_logprobs"] = [None] + [
                    {str(t): {"logprob": -1.0, "rank": 1, "decoded_token": "x"}} for t in prompt[1:]
                ]
            usage = {"prompt_tokens": n_prompt, "completion_tokens": n_out, "total_tokens": n_prompt + n_out}
            return web.json_response(
                {"id": "cmpl-fake", "object": "text_completion", "choices": [choice], "usage": usage}
            )
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        with_ids = mode != "no_usage"
        delay = self.token_delay_s * (20 if mode == "slow" else 1)
        first_ts = last_ts = arrived
        for i in range(n_out):
            await asyncio.sleep(delay)
            if request.path.endswith("/chat/completions"):  # chat streams a delta, without token ids
                choice: dict[str, Any] = {"index": 0, "delta": {"content": f" t{i}"}}
            else:
                choice = {"index": 0, "text": f" t{i}"}
                if with_ids:
                    choice["token_ids"] = [100 + i]
            chunk: dict[str, Any] = {"id": "cmpl-fake", "choices": [choice]}
            await resp.write(f"data: {json.dumps(chunk)}\n\n".encode())
            last_ts = time.perf_counter()
            if i == 0:
                first_ts = last_ts
                if mode == "malformed":
                    await resp.write(b"data: {this is not json\n\n")
                    return resp
                if mode == "stall":
                    await asyncio.sleep(3600)
            if mode == "broken" and i == 1:
                assert request.transport is not None
                request.transport.close()
                return resp
        self.prompt_tokens += n_prompt
        self.generated_tokens += n_out
        if mode != "no_usage":
            usage_chunk = {
                "id": "cmpl-fake",
                "choices": [],
                "usage": {"prompt_tokens": n_prompt, "completion_tokens": n_out, "total_tokens": n_prompt + n_out},
                "metrics": {
                    "time_to_first_token_ms": (first_ts - arrived) * 1000,
                    "queue_time_ms": 0.0,
                    "mean_itl_ms": (last_ts - first_ts) / max(1, n_out - 1) * 1000,
                },
            }
            await resp.write(f"data: {json.dumps(usage_chunk)}\n\n".encode())
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp
