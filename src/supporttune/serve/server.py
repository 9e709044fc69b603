"""`supporttune serve RUNDIR`: an HTTP service (FastAPI + uvicorn) on the generation engine.

* ``POST /v1/reply`` ``{"message", "brand"?}`` -> reply + the tagger's labels + latency.
* ``POST /v1/chat/completions``: OpenAI-compatible, streaming included (``"stream": true`` sends
  server-sent events ending with ``data: [DONE]``), so the ``openai`` client works unchanged.
* ``GET /v1/models``, ``GET /health``; the OpenAPI schema at ``/openapi.json``.

Requests are batched (batcher.py) into engine calls; on a GPU the engine compiles the batch shape
before the server takes requests (``warmup_s`` in /health). Work for a client that went away is
dropped. Every error is JSON in the OpenAI shape (serve_api.py); the server keeps serving after any.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..inference.agent import Agent
from ..inference.decode import DecodeSettings
from .api import (
    ChatRequest,
    Guard,
    ReplyRequest,
    ReplyResponse,
    chunk,
    error,
    error_body,
    json_error_message,
)
from .batcher import Job, WindowBatcher, make_batcher
from .config import ServeOptions
from .respond import Reply, ReplyText, context_limit, prompt_for


def create_app(agent: Agent, opts: ServeOptions | None = None) -> FastAPI:
    opts = opts or ServeOptions()
    max_batch = opts.max_batch if opts.batching else 1
    batcher = make_batcher(agent, opts.batcher, max_batch, opts.max_wait_ms, opts.max_new_tokens, opts.decode_spec())
    limit = context_limit(agent)
    state = {"warmup_s": 0.0, "cancelled": 0}

    async def lifespan(app: FastAPI):
        if isinstance(batcher, WindowBatcher):
            from ..inference.engine import engine_for

            settings = DecodeSettings(opts.max_new_tokens, max_batch)
            state["warmup_s"] = round(await asyncio.to_thread(engine_for(agent).warmup, max_batch,
                                                              opts.warmup_prompt_tokens, settings), 2)
        batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="supporttune", version="1", lifespan=lifespan,
                  description=f"Customer-support reply agent {agent.name}")
    app.state.batcher = batcher
    app.add_middleware(Guard, api_key=opts.api_key, max_body_bytes=opts.max_body_bytes)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        what = {404: "no such endpoint", 405: "method not allowed for this endpoint"}.get(exc.status_code, str(exc.detail))
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return error(exc.status_code, f"{request.method} {request.url.path}: {what}", kind,
                     code={404: "not_found", 405: "method_not_allowed"}.get(exc.status_code))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {"loc": [], "msg": "invalid request"}
        if first.get("type") == "json_invalid":
            return error(400, json_error_message(await request.body()), code="invalid_json")
        where = ".".join(str(x) for x in first.get("loc", []) if x != "body")
        return error(400, f"{where or 'body'}: {first.get('msg')}", param=where or None)

    async def submit(message: str, brand: str | None, budget: int, temperature: float, history: list[dict],
                     stop: list[str], stream: bool) -> Job | JSONResponse:
        if not message.strip():
            return error(400, "the customer message is empty or only whitespace", param="message")
        prompt = await asyncio.to_thread(prompt_for, agent, message, brand, history)
        if len(prompt) + budget > limit:
            return error(400, f"message too long: {len(prompt)} prompt tokens + {budget} new tokens exceed the model's "
                              f"context of {limit}", code="context_length_exceeded")
        loop = asyncio.get_running_loop()
        job = Job(message, brand, history, prompt, budget, temperature, ReplyText(agent.tokenizer, budget, stop),
                  loop.create_future(), asyncio.Queue() if stream else None)
        try:
            await batcher.submit(job)
        except ValueError as e:
            return error(400, str(e), param="temperature")
        return job

    async def answer(request: Request, jobs: list[Job]) -> list[Reply] | JSONResponse | None:
        """The jobs' replies, or None once the client has gone away (its jobs are cancelled)."""
        done = asyncio.ensure_future(asyncio.gather(*(j.future for j in jobs)))
        gone = asyncio.ensure_future(_disconnected(request))
        await asyncio.wait({done, gone}, return_when=asyncio.FIRST_COMPLETED)
        if not done.done():
            for j in jobs:
                j.cancelled = True
            state["cancelled"] += len(jobs)
            done.cancel()
            return None
        gone.cancel()
        try:
            return done.result()
        except Exception as e:
            return error(500, f"generation failed: {type(e).__name__}: {e}", "server_error")

    @app.get("/health")
    async def health():
        return {"status": "ok", "model": agent.name, "method": agent.method, "device": agent.device,
                "batcher": type(batcher).__name__, "batching": opts.batching, "max_batch": max_batch,
                "decode": opts.decode_spec().record(),
                "batches_served": len(batcher.batches), "warmup_s": state["warmup_s"],
                "cancelled_requests": state["cancelled"], "skipped_jobs": batcher.skipped}

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": agent.name, "object": "model", "created": 0, "owned_by": "supporttune"}]}

    @app.post("/v1/reply", response_model=ReplyResponse)
    async def reply(req: ReplyRequest, request: Request):
        t0 = time.perf_counter()
        job = await submit(req.message, req.brand, req.max_tokens or opts.max_new_tokens, 0.0, [], [], False)
        if isinstance(job, JSONResponse):
            return job
        out = await answer(request, [job])
        if not isinstance(out, list):
            return out
        r = out[0]
        return ReplyResponse(reply=r.reply, sentiment=r.sentiment, priority=r.priority, category=r.category,
                             latency_ms=round(1000 * (time.perf_counter() - t0), 2))

    @app.post("/v1/chat/completions")
    async def chat_completions(req: ChatRequest, request: Request):
        bad = req.unsupported()
        if bad:
            return error(400, bad[1], param=bad[0], code="unsupported_parameter")
        last = max((i for i, m in enumerate(req.messages) if m.role == "user"), default=None)
        if last is None:
            return error(400, "messages: needs a user message", param="messages")
        # the conversation so far (user and assistant turns before the last user message) is the history
        history = [{"role": m.role, "content": m.text()} for m in req.messages[:last]
                   if m.role in ("user", "assistant") and m.text().strip()]
        budget, temperature = req.budget() or opts.max_new_tokens, req.temperature or 0.0
        jobs = []
        for _ in range(req.n):
            job = await submit(req.messages[last].text(), req.brand, budget, temperature, history, req.stop, req.stream)
            if isinstance(job, JSONResponse):
                for j in jobs:
                    j.cancelled = True
                return job
            jobs.append(job)
        cid, model = f"chatcmpl-{uuid.uuid4().hex[:24]}", req.model or agent.name
        if req.stream:
            usage = bool((req.stream_options or {}).get("include_usage"))
            return StreamingResponse(_events(jobs[0], cid, model, usage, state), media_type="text/event-stream")
        out = await answer(request, jobs)
        if not isinstance(out, list):
            return out
        prompt_tokens, completion = out[0].prompt_tokens, sum(r.completion_tokens for r in out)
        return {"id": cid, "object": "chat.completion", "created": int(time.time()), "model": model,
                "choices": [{"index": i, "message": {"role": "assistant", "content": r.reply}, "finish_reason": r.finish_reason,
                             "logprobs": None} for i, r in enumerate(out)],
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion,
                          "total_tokens": prompt_tokens + completion},
                "supporttune": {"sentiment": out[0].sentiment, "priority": out[0].priority, "category": out[0].category}}

    return app


async def _disconnected(request: Request) -> None:
    """Returns once the client has closed the connection (the body was read already, by the guard)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def _events(job: Job, cid: str, model: str, usage: bool, state: dict):
    """The SSE stream of one job: role, text pieces as they are safe to show, finish reason, [DONE]."""
    finished = False
    try:
        yield chunk(cid, model, {"role": "assistant", "content": ""})
        while (piece := await job.stream.get()) is not None:
            yield chunk(cid, model, {"content": piece})
        try:
            r = await job.future
        except Exception as e:  # the stream has started: report in-band, OpenAI style
            yield f"data: {json.dumps(error_body(f'generation failed: {type(e).__name__}: {e}', 'server_error'))}\n\n"
        else:
            yield chunk(cid, model, {}, r.finish_reason)
            if usage:
                yield chunk(cid, model, {}, usage={"prompt_tokens": r.prompt_tokens, "completion_tokens": r.completion_tokens,
                                                   "total_tokens": r.prompt_tokens + r.completion_tokens})
        yield "data: [DONE]\n\n"
        finished = True
    finally:
        if not finished:  # the client went away mid-stream
            job.cancelled = True
            state["cancelled"] += 1


def serve(agent: Agent, host: str, port: int, opts: ServeOptions) -> None:
    import uvicorn

    uvicorn.run(create_app(agent, opts), host=host, port=port, log_level="info")
