"""The HTTP protocol of `serve`: request bodies, the OpenAI error shape, streamed chunks, the guard.

Every error body is OpenAI's ``{"error": {"message", "type", "param", "code"}}``. Parameters of
the chat-completions API are honoured (``max_tokens``/``max_completion_tokens``, ``temperature``,
``n``, ``stop``, ``stream``, ``stream_options.include_usage``, text content parts) or, when set to
something this server cannot do (tools, logprobs, JSON mode, image parts, ...), refused with a
400 that names the parameter; ``user``, ``seed`` and neutral sampling values are accepted.

``Guard`` is plain ASGI middleware in front of /v1/: the API key (401), then the request body read
in full with a running count (413 as soon as it passes the limit, whatever the transfer encoding:
a chunked body gets no Content-Length to check), then replayed to the app; later ``receive`` calls
reach the server's own, so endpoints still learn when the client goes away.
"""

from __future__ import annotations

import hmac
import json
import time
from typing import Any, Literal

from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_TOKENS = 512


def error_body(message: str, kind: str = "invalid_request_error", param: str | None = None,
               code: str | None = None) -> dict:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def error(status: int, message: str, kind: str = "invalid_request_error", param: str | None = None,
          code: str | None = None) -> JSONResponse:
    return JSONResponse(status_code=status, content=error_body(message, kind, param, code))


class ReplyRequest(BaseModel):
    message: str = Field(..., min_length=1, description="The customer's message.")
    brand: str | None = Field(None, description="The company answering (conditions the reply).")
    max_tokens: int | None = Field(None, gt=0, le=MAX_TOKENS)
    model: str | None = Field(None, description="The agent to answer (GET /v1/models); none: the default or the split.")


class ReplyResponse(BaseModel):
    id: str = Field(description="Quote it in POST /v1/feedback.")
    model: str = Field(description="The agent that answered.")
    reply: str
    sentiment: str
    priority: str
    category: str
    latency_ms: float


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None

    def text(self) -> str:
        if self.content is None or isinstance(self.content, str):
            return self.content or ""
        return "\n".join(p.text or "" for p in self.content)


# parameters that change what OpenAI would return, and the value at which they change nothing
NEUTRAL = {"top_p": (1, 1.0), "presence_penalty": (0, 0.0), "frequency_penalty": (0, 0.0), "logprobs": (False,),
           "tools": ([],), "tool_choice": ("none",), "functions": ([],), "function_call": ("none",),
           "response_format": ({"type": "text"},), "top_logprobs": (0,), "logit_bias": ({},),
           "modalities": (["text"],), "audio": (), "prediction": (), "parallel_tool_calls": (False, True)}
IGNORED = {"user", "store", "metadata", "service_tier", "reasoning_effort"}
SYSTEM_ROLES = ("system", "developer")


def model_not_found(model: str) -> JSONResponse:
    """OpenAI's answer to a model name it does not serve."""
    return error(404, f"The model `{model}` does not exist or you do not have access to it.", param="model",
                 code="model_not_found")


def stop_list(v) -> list[str]:
    stops = [v] if isinstance(v, str) else list(v or [])
    if len(stops) > 4 or any(not s for s in stops):
        raise ValueError("up to 4 non-empty stop strings")
    return stops


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str | None = None
    messages: list[ChatMessage] = Field(..., min_length=1)
    max_tokens: int | None = Field(None, gt=0, le=MAX_TOKENS)
    max_completion_tokens: int | None = Field(None, gt=0, le=MAX_TOKENS)
    temperature: float | None = Field(None, ge=0, le=2)
    n: int = Field(1, ge=1, le=8)
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: dict | None = None
    seed: int | None = Field(None, ge=0, lt=2**63, description="Sampling seed: the same seed gives the same replies.")
    brand: str | None = None  # extension: pass with extra_body={"brand": ...}

    @field_validator("stop")
    @classmethod
    def _stops(cls, v):
        return stop_list(v)

    def budget(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    def instructions(self) -> str:
        """The client's system (and developer) messages, joined: added to the trained prompt's system turn."""
        return "\n\n".join(m.text().strip() for m in self.messages if m.role in SYSTEM_ROLES and m.text().strip())

    def sampling(self) -> tuple[float, str | None]:
        return sampling(self.temperature, self.n)

    def unsupported(self) -> tuple[str, str] | None:
        """(parameter, why) for the first parameter this server cannot honour, else None."""
        bad = refused(self.model_extra, NEUTRAL)
        if bad:
            return bad
        for i, m in enumerate(self.messages):
            for part in m.content if isinstance(m.content, list) else []:
                if part.type != "text":
                    return f"messages[{i}].content", f"content parts of type '{part.type}' are not supported (text only)"
        if self.stream and self.n > 1:
            return "n", "n > 1 cannot be combined with stream"
        return None


def sampling(temperature: float | None, n: int) -> tuple[float, str | None]:
    """The temperature to sample at, and a warning for the response.

    OpenAI samples at temperature 1 unless told otherwise; this server's default is greedy (what
    evaluate scored). With ``n > 1`` and no temperature, it samples at 1 as OpenAI does (n greedy
    replies would be n copies); ``n > 1`` at temperature 0 is answered with a warning.
    """
    if temperature is None:
        return (1.0, None) if n > 1 else (0.0, None)
    if n > 1 and temperature == 0:
        return 0.0, f"n={n} at temperature 0: greedy decoding gives {n} identical replies"
    return temperature, None


def refused(extra: dict | None, neutral: dict) -> tuple[str, str] | None:
    """(parameter, why) for the first extra parameter that is unknown or set to what this server cannot do."""
    for name, value in (extra or {}).items():
        if name in IGNORED or value is None:
            continue
        if name not in neutral:
            return name, f"unknown parameter '{name}'"
        if value not in neutral[name]:
            return name, f"'{name}' is not supported by this server (a fine-tuned support agent: text replies only)"
    return None


# /v1/completions parameters beyond the chat ones, and the value at which they change nothing
NEUTRAL_TEXT = {**NEUTRAL, "echo": (False,), "suffix": ("",), "best_of": (1,), "logprobs": (0, False)}


class CompletionRequest(BaseModel):
    """POST /v1/completions: a raw prompt, continued as is (the prompt builder is not involved)."""

    model_config = ConfigDict(extra="allow")
    model: str | None = None
    prompt: str | list[str]
    max_tokens: int | None = Field(None, gt=0, le=MAX_TOKENS)
    temperature: float | None = Field(None, ge=0, le=2)
    n: int = Field(1, ge=1, le=8)
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: dict | None = None
    seed: int | None = Field(None, ge=0, lt=2**63)

    @field_validator("stop")
    @classmethod
    def _stops(cls, v):
        return stop_list(v)

    def text(self) -> str | None:
        """The one prompt (a list of one is accepted, as the openai client may send it); None for several."""
        if isinstance(self.prompt, str):
            return self.prompt
        return self.prompt[0] if len(self.prompt) == 1 else None

    def sampling(self) -> tuple[float, str | None]:
        return sampling(self.temperature, self.n)

    def unsupported(self) -> tuple[str, str] | None:
        bad = refused(self.model_extra, NEUTRAL_TEXT)
        if bad:
            return bad
        if self.text() is None:
            return "prompt", "one prompt per request (send several requests)"
        if self.stream and self.n > 1:
            return "n", "n > 1 cannot be combined with stream"
        return None


def chunk(cid: str, model: str, delta: dict, finish: str | None = None, usage: dict | None = None) -> str:
    """One server-sent event of a streamed chat completion."""
    body: dict[str, Any] = {"id": cid, "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
                            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}] if usage is None else []}
    if usage is not None:
        body["usage"] = usage
    return f"data: {json.dumps(body)}\n\n"


def text_chunk(cid: str, model: str, text: str, finish: str | None = None, usage: dict | None = None) -> str:
    """One server-sent event of a streamed (text) completion."""
    body: dict[str, Any] = {"id": cid, "object": "text_completion", "created": int(time.time()), "model": model,
                            "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish}]
                            if usage is None else []}
    if usage is not None:
        body["usage"] = usage
    return f"data: {json.dumps(body)}\n\n"


def json_error_message(body: bytes) -> str:
    """Where and why a body is not JSON (the decoder's own words: line, column, character)."""
    try:
        json.loads(body)
    except json.JSONDecodeError as e:
        return f"request body is not valid JSON: {e.msg} at line {e.lineno} column {e.colno} (character {e.pos})"
    except UnicodeDecodeError as e:
        return f"request body is not UTF-8 text (byte {e.start})"
    return "request body is not valid JSON"


class Guard:
    """ASGI middleware for /v1/: API key, then the body read under a byte limit and replayed."""

    def __init__(self, app, api_key: str | None, max_body_bytes: int):
        self.app, self.api_key, self.limit = app, api_key, max_body_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if self.api_key:
            given = headers.get("authorization", "").removeprefix("Bearer ").strip() or headers.get("x-api-key", "")
            if not hmac.compare_digest(given.encode(), self.api_key.encode()):
                return await _send(send, 401, error_body("missing or wrong API key (Authorization: Bearer KEY)",
                                                         "authentication_error", code="invalid_api_key"))
        too_large = error_body(f"request body over {self.limit} bytes", "request_too_large", code="request_too_large")
        size = headers.get("content-length", "")
        if size.isdigit() and int(size) > self.limit:
            return await _send(send, 413, too_large)
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.limit:
                return await _send(send, 413, too_large)
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def _send(send, status: int, body: dict) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": data})
