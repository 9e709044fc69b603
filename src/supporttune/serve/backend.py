"""`serve RUN --backend URL`: our prompt builder in front of any OpenAI-compatible inference engine.

This server keeps what made the agent good (tagging, retrieval, history, the chat template: the
prompt builder renders the finished prompt text, exactly what `chat` and `evaluate` tokenize) and
sends that text to the backend's ``/v1/completions`` (vLLM, llama.cpp server, Ollama, or another
`supporttune serve`). Only the tokenizer is needed here.

Every way the backend can fail becomes an OpenAI-shaped error within ``--backend-timeout-s``, never
a hang: refused connection -> 502 ``backend_unreachable``; no answer in time -> 504
``backend_timeout``; a 5xx (or another status) -> 502 ``backend_error`` with the backend's own
message; a 400 (e.g. the prompt is too long for it) -> 400 with its message; a body that is not the
completions shape -> 502 ``backend_bad_response``. Errors after a stream started arrive in-band.
Set ``SUPPORTTUNE_BACKEND_API_KEY`` when the backend wants a key.
"""

from __future__ import annotations

import json
import os
from typing import AsyncIterator

import httpx
from fastapi import Request
from fastapi.responses import JSONResponse

from ..inference.agent import Agent
from .api import error
from .config import ServeOptions
from .local import Params, Prompt
from .respond import Reply


class BackendError(Exception):
    def __init__(self, status: int, message: str, code: str):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code

    def response(self) -> JSONResponse:
        return error(self.status, self.message, "invalid_request_error" if self.status == 400 else "server_error",
                     code=self.code)


def base_url(url: str) -> str:
    """``http://host:8000`` or ``http://host:8000/v1`` -> ``http://host:8000/v1``."""
    url = url.rstrip("/")
    return url if url.endswith("/v1") else url + "/v1"


class BackendDriver:
    """One agent whose replies come from the backend's /v1/completions."""

    def __init__(self, agent: Agent, opts: ServeOptions):
        self.agent, self.opts = agent, opts
        self.url = base_url(opts.backend or "")
        self.model = opts.backend_model
        self.client: httpx.AsyncClient | None = None
        key = os.environ.get("SUPPORTTUNE_BACKEND_API_KEY")
        self.headers = {"Authorization": f"Bearer {key}"} if key else {}

    async def start(self) -> None:
        self.client = httpx.AsyncClient(timeout=self.opts.backend_timeout_s, headers=self.headers)

    async def stop(self) -> None:
        if self.client is not None:
            await self.client.aclose()

    def health(self) -> dict:
        return {"batcher": "backend", "backend": self.url, "backend_model": self.model}

    def text(self, prompt: Prompt) -> str:
        return self.agent.prompts.text(prompt.example) if prompt.example is not None else (prompt.raw or "")

    async def _model(self) -> str:
        """The backend's model name: --backend-model, else the first its /v1/models lists (asked once)."""
        if self.model is None:
            body = await self._call("GET", "/models")
            try:
                self.model = str(body["data"][0]["id"])
            except (KeyError, IndexError, TypeError):
                raise BackendError(502, f"backend {self.url}/models lists no model; set --backend-model",
                                   "backend_bad_response") from None
        return self.model

    def _body(self, model: str, text: str, params: Params, stream: bool) -> dict:
        body = {"model": model, "prompt": text, "max_tokens": params.max_tokens, "temperature": params.temperature,
                "n": params.n, "stream": stream}
        if params.stop:
            body["stop"] = params.stop
        if params.seed is not None:
            body["seed"] = params.seed
        if stream:
            body["stream_options"] = {"include_usage": True}
        return body

    async def _call(self, method: str, path: str, body: dict | None = None) -> dict:
        try:
            r = await self.client.request(method, self.url + path, json=body)
        except httpx.HTTPError as e:
            raise transport_error(self.url, e, self.opts.backend_timeout_s) from None
        if r.status_code != 200:
            raise status_error(self.url, r.status_code, r.content)
        try:
            return r.json()
        except ValueError:
            raise BackendError(502, f"backend {self.url}{path} answered with malformed JSON: {r.text[:120]!r}",
                               "backend_bad_response") from None

    async def replies(self, request: Request, prompt: Prompt, params: Params) -> list[Reply] | JSONResponse:
        try:
            body = await self._call("POST", "/completions", self._body(await self._model(), self.text(prompt),
                                                                       params, False))
            choices = sorted(body["choices"], key=lambda c: c.get("index", 0))
            texts = [str(c["text"]) for c in choices]
            usage = body.get("usage") or {}
        except BackendError as e:
            return e.response()
        except (KeyError, TypeError, AttributeError):
            return BackendError(502, f"backend {self.url}/completions answered without choices[].text",
                                "backend_bad_response").response()
        sentiment, priority, category = prompt.tags()
        tok = self.agent.tokenizer
        prompt_tokens = int(usage.get("prompt_tokens") or 0)
        out = []
        for c, text in zip(choices, texts):
            n = int(usage["completion_tokens"]) if len(choices) == 1 and usage.get("completion_tokens") is not None \
                else len(tok(text, add_special_tokens=False)["input_ids"])
            out.append(Reply(text.strip(), sentiment, priority, category, prompt_tokens, n, c.get("finish_reason") or "stop"))
        return out

    async def stream(self, prompt: Prompt, params: Params) -> AsyncIterator[str | Reply] | JSONResponse:
        try:
            req = self.client.build_request("POST", self.url + "/completions",
                                            json=self._body(await self._model(), self.text(prompt), params, True))
            try:
                resp = await self.client.send(req, stream=True)
            except httpx.HTTPError as e:
                raise transport_error(self.url, e, self.opts.backend_timeout_s) from None
            if resp.status_code != 200:
                content = await resp.aread()
                await resp.aclose()
                raise status_error(self.url, resp.status_code, content)
            if not resp.headers.get("content-type", "").startswith("text/event-stream"):
                content = await resp.aread()
                await resp.aclose()
                raise BackendError(502, f"backend {self.url}/completions answered a stream request with "
                                        f"{resp.headers.get('content-type') or 'no content type'}: {content[:120]!r}",
                                   "backend_bad_response")
        except BackendError as e:
            return e.response()
        return self._pieces(resp, prompt)

    async def _pieces(self, resp: httpx.Response, prompt: Prompt) -> AsyncIterator[str | Reply]:
        text, finish, usage = "", None, {}
        try:
            async for line in resp.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                try:
                    event = json.loads(data)
                except ValueError:
                    raise RuntimeError(f"backend sent malformed JSON in its stream: {data[:120]!r}") from None
                if "error" in event:
                    raise RuntimeError(f"backend: {event['error']}")
                usage = event.get("usage") or usage
                for c in event.get("choices") or []:
                    piece = str(c.get("text") or "")
                    if not text:
                        piece = piece.lstrip()  # replies are stripped; so is the streamed start
                    text += piece
                    finish = c.get("finish_reason") or finish
                    if piece:
                        yield piece
        except httpx.HTTPError as e:
            raise RuntimeError(transport_error(self.url, e, self.opts.backend_timeout_s).message) from None
        finally:
            await resp.aclose()
        sentiment, priority, category = prompt.tags()
        n = usage.get("completion_tokens")
        if n is None:
            n = len(self.agent.tokenizer(text, add_special_tokens=False)["input_ids"])
        yield Reply(text.strip(), sentiment, priority, category, int(usage.get("prompt_tokens") or 0), int(n),
                    finish or "stop")


def transport_error(url: str, e: httpx.HTTPError, timeout: float) -> BackendError:
    if isinstance(e, httpx.TimeoutException):
        return BackendError(504, f"backend {url} did not answer within {timeout:g} s ({type(e).__name__})",
                            "backend_timeout")
    if isinstance(e, httpx.ConnectError):
        return BackendError(502, f"cannot reach the backend at {url} ({e or 'connection refused'})", "backend_unreachable")
    return BackendError(502, f"backend {url} failed: {type(e).__name__}: {e}", "backend_error")


def status_error(url: str, status: int, content: bytes) -> BackendError:
    try:
        err = json.loads(content)
        message = err["error"]["message"] if isinstance(err.get("error"), dict) else str(err.get("error") or err)
    except (ValueError, AttributeError, TypeError, KeyError):
        message = content[:200].decode("utf-8", "replace")
    if status == 400:
        return BackendError(400, f"backend: {message}", "backend_rejected")
    return BackendError(502, f"backend {url} answered {status}: {message}", "backend_error")
