"""`supporttune serve RUNDIR`: an HTTP service (FastAPI + uvicorn) with dynamic batching.

* ``POST /v1/reply`` ``{"message", "brand"?}`` -> reply + the tagger's labels + latency.
* ``POST /v1/chat/completions``: OpenAI-compatible, so the ``openai`` client works unchanged.
* ``GET /health``; the OpenAPI schema at ``/openapi.json``.

Concurrent requests wait at most ``max_wait_ms`` in a queue and are answered by one batched
``generate`` call (up to ``max_batch``), so throughput grows with load. Errors are JSON in the
OpenAI shape ``{"error": {"message", "type"}}``; the server keeps serving after any of them.
"""

from __future__ import annotations

import asyncio
import hmac
import time
import uuid
from dataclasses import dataclass, field

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from .generate import Agent
from .respond import Reply, context_limit, prompt_length, respond_batch


class ReplyRequest(BaseModel):
    message: str = Field(..., min_length=1, description="The customer's message.")
    brand: str | None = Field(None, description="The company answering (conditions the reply).")
    max_tokens: int | None = Field(None, gt=0, le=512)


class ReplyResponse(BaseModel):
    reply: str
    sentiment: str
    priority: str
    category: str
    latency_ms: float


class ChatMessage(BaseModel):
    role: str
    content: str


class ChatRequest(BaseModel):
    model: str | None = None
    messages: list[ChatMessage] = Field(..., min_length=1)
    max_tokens: int | None = Field(None, gt=0, le=512)
    temperature: float | None = Field(None, ge=0, le=2)
    brand: str | None = None  # extension: pass with extra_body={"brand": ...}


@dataclass
class ServeOptions:
    api_key: str | None = None
    max_batch: int = 16
    max_wait_ms: float = 10.0
    max_new_tokens: int = 64
    max_body_bytes: int = 64 * 1024
    batching: bool = True


@dataclass
class _Job:
    message: str
    brand: str | None
    history: list[dict]
    max_tokens: int
    temperature: float
    future: asyncio.Future
    enqueued: float = field(default_factory=time.perf_counter)


class Batcher:
    """Collects concurrent jobs for up to ``max_wait_ms`` and answers them with one generate call."""

    def __init__(self, agent: Agent, opts: ServeOptions):
        self.agent, self.opts = agent, opts
        self.queue: asyncio.Queue[_Job] = asyncio.Queue()
        self.batches: list[int] = []  # sizes, for tests and /health
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()

    async def submit(self, message: str, brand: str | None, max_tokens: int, temperature: float = 0.0,
                     history: list[dict] | None = None) -> Reply:
        job = _Job(message, brand, list(history or []), max_tokens, temperature, asyncio.get_running_loop().create_future())
        await self.queue.put(job)
        return await job.future

    async def _loop(self) -> None:
        limit = self.opts.max_batch if self.opts.batching else 1
        while True:
            jobs = [await self.queue.get()]
            deadline = time.perf_counter() + self.opts.max_wait_ms / 1000
            while len(jobs) < limit:
                timeout = deadline - time.perf_counter()
                if timeout <= 0:
                    break
                try:
                    jobs.append(await asyncio.wait_for(self.queue.get(), timeout))
                except asyncio.TimeoutError:
                    break
            self.batches.append(len(jobs))
            groups: dict[float, list[_Job]] = {}
            for j in jobs:  # one generate call per temperature (greedy requests share one)
                groups.setdefault(j.temperature, []).append(j)
            for temperature, group in groups.items():
                await self._run(group, temperature)

    async def _run(self, jobs: list[_Job], temperature: float) -> None:
        longest = max(j.max_tokens for j in jobs)
        try:
            replies = await asyncio.to_thread(respond_batch, self.agent, [(j.message, j.brand, j.history) for j in jobs], longest,
                                              temperature)
        except Exception as e:  # a generation error fails this batch, not the server
            for j in jobs:
                if not j.future.done():
                    j.future.set_exception(e)
            return
        for j, r in zip(jobs, replies):
            if r.completion_tokens > j.max_tokens:  # greedy: a shorter budget is a prefix of the longer one
                ids = self.agent.tokenizer(r.reply, add_special_tokens=False)["input_ids"][: j.max_tokens]
                r = Reply(self.agent.tokenizer.decode(ids).strip(), r.sentiment, r.priority, r.category,
                          r.prompt_tokens, j.max_tokens, "length")
            if not j.future.done():
                j.future.set_result(r)


def _error(status: int, message: str, kind: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": {"message": message, "type": kind}})


def create_app(agent: Agent, opts: ServeOptions | None = None) -> FastAPI:
    opts = opts or ServeOptions()
    batcher = Batcher(agent, opts)
    limit = context_limit(agent)

    async def lifespan(app: FastAPI):
        batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="supporttune", version="1", lifespan=lifespan,
                  description=f"Customer-support reply agent {agent.name}")
    app.state.batcher = batcher

    @app.middleware("http")
    async def guard(request: Request, call_next):
        if request.url.path.startswith("/v1/"):
            if opts.api_key:
                given = request.headers.get("authorization", "").removeprefix("Bearer ").strip() or request.headers.get("x-api-key", "")
                if not hmac.compare_digest(given.encode(), opts.api_key.encode()):
                    return _error(401, "missing or wrong API key (Authorization: Bearer KEY)", "authentication_error")
            size = request.headers.get("content-length")
            if size and size.isdigit() and int(size) > opts.max_body_bytes:
                return _error(413, f"request body over {opts.max_body_bytes} bytes", "request_too_large")
        return await call_next(request)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {"loc": [], "msg": "invalid request"}
        where = ".".join(str(x) for x in first.get("loc", []) if x != "body")
        return _error(422, f"{where or 'body'}: {first.get('msg')}", "invalid_request_error")

    async def answer(message: str, brand: str | None, max_tokens: int | None,
                     temperature: float | None = None, history: list[dict] | None = None) -> Reply | JSONResponse:
        budget = max_tokens or opts.max_new_tokens
        n = await asyncio.to_thread(prompt_length, agent, message, brand, history)
        if n + budget > limit:
            return _error(422, f"message too long: {n} prompt tokens + {budget} new tokens exceed the model's "
                               f"context of {limit}", "context_length_exceeded")
        try:
            return await batcher.submit(message, brand, budget, temperature or 0.0, history)
        except Exception as e:
            return _error(500, f"generation failed: {type(e).__name__}: {e}", "server_error")

    @app.get("/health")
    async def health():
        return {"status": "ok", "model": agent.name, "method": agent.method, "device": agent.device,
                "batching": opts.batching, "max_batch": opts.max_batch, "batches_served": len(batcher.batches)}

    @app.post("/v1/reply", response_model=ReplyResponse)
    async def reply(req: ReplyRequest):
        t0 = time.perf_counter()
        r = await answer(req.message, req.brand, req.max_tokens)
        if isinstance(r, JSONResponse):
            return r
        return ReplyResponse(reply=r.reply, sentiment=r.sentiment, priority=r.priority, category=r.category,
                             latency_ms=round(1000 * (time.perf_counter() - t0), 2))

    @app.post("/v1/chat/completions")
    async def chat_completions(req: ChatRequest):
        last = max((i for i, m in enumerate(req.messages) if m.role == "user"), default=None)
        if last is None or not req.messages[last].content.strip():
            return _error(422, "messages: needs a non-empty user message", "invalid_request_error")
        # the conversation so far (user and assistant turns before the last user message) is the history
        history = [{"role": m.role, "content": m.content} for m in req.messages[:last]
                   if m.role in ("user", "assistant") and m.content.strip()]
        r = await answer(req.messages[last].content, req.brand, req.max_tokens, req.temperature, history)
        if isinstance(r, JSONResponse):
            return r
        return {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion", "created": int(time.time()),
                "model": req.model or agent.name,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": r.reply},
                             "finish_reason": r.finish_reason}],
                "usage": {"prompt_tokens": r.prompt_tokens, "completion_tokens": r.completion_tokens,
                          "total_tokens": r.prompt_tokens + r.completion_tokens},
                "supporttune": {"sentiment": r.sentiment, "priority": r.priority, "category": r.category}}

    return app


def serve(agent: Agent, host: str, port: int, opts: ServeOptions) -> None:
    import uvicorn

    uvicorn.run(create_app(agent, opts), host=host, port=port, log_level="info")
