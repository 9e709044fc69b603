"""`supporttune serve RUN [RUN ...]`: an HTTP service (FastAPI + uvicorn) on the generation engine.

* ``POST /v1/reply`` ``{"message", "brand"?, "model"?}`` -> reply + the tagger's labels + latency.
* ``POST /v1/chat/completions``: OpenAI-compatible, streaming included (``"stream": true`` sends
  server-sent events ending with ``data: [DONE]``), so the ``openai`` client works unchanged.
  A system (or developer) message is added to the system turn the agent was trained with (after
  the brand, tags and retrieved replies; ``--system refuse`` refuses it instead); ``seed`` makes
  sampling reproducible; ``n > 1`` with no temperature samples at 1, as OpenAI does.
* ``POST /v1/completions``: a raw prompt in, OpenAI's completions shape out (streaming too).
* ``GET /v1/models`` (what is served), ``GET /health``; the OpenAPI schema at ``/openapi.json``.

The request's ``model`` picks the agent (an unknown name gets OpenAI's 404 ``model_not_found``);
with none, the first agent answers, or the ``--split`` decides. Each agent answers through a
driver: its model here, batched (local.py), or another engine behind ``--backend`` (backend.py).
Every error is JSON in the OpenAI shape (api.py), every 4xx is logged with its reason (console.py);
the server keeps serving after any.
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
from .api import (
    ChatRequest,
    Guard,
    ReplyRequest,
    ReplyResponse,
    chunk,
    error,
    error_body,
    json_error_message,
    model_not_found,
    text_chunk,
)
from .completions import add_completions
from .config import ServeOptions
from .console import ErrorLog
from .feedback import FeedbackRequest, Recent, append, record, store_for
from .local import LocalDriver, Params, Prompt
from .respond import Reply, live_example
from .router import Router, Served, parse_split


def make_driver(agent: Agent, opts: ServeOptions, state: dict, shared_base: bool = False):
    if opts.backend:
        from .backend import BackendDriver

        return BackendDriver(agent, opts)
    # agents sharing one base take turns on it: the window batcher (the continuous one copies the weights)
    return LocalDriver(agent, opts, state, "window" if shared_base and opts.batcher == "auto" else None)


def create_app(agents: Agent | list[Agent], opts: ServeOptions | None = None) -> FastAPI:
    opts = opts or ServeOptions()
    agents = [agents] if isinstance(agents, Agent) else list(agents)
    state = {"cancelled": 0}
    bases = [id(a.model) for a in agents]
    served = [Served(a.name, a, make_driver(a, opts, state, bases.count(id(a.model)) > 1),
                     str(getattr(a, "run_dir", "") or "") or None) for a in agents]
    router = Router(served, parse_split(opts.split, [s.name for s in served]))
    first = served[0]
    recent = Recent()

    def remember(rid: str, s: Served, example: dict, reply: str) -> None:
        recent.remember(rid, {"model": s.name, "run": s.run, "message": example["input"], "brand": example.get("brand"),
                              "history": example.get("history"), "instructions": example.get("instructions"),
                              "reply": reply})

    async def lifespan(app: FastAPI):
        for s in served:
            await s.driver.start()
        yield
        for s in served:
            await s.driver.stop()

    app = FastAPI(title="supporttune", version="1", lifespan=lifespan,
                  description=f"Customer-support reply agents: {', '.join(router.names())}")
    app.state.router = router
    app.state.batcher = getattr(first.driver, "batcher", None)
    app.add_middleware(Guard, api_key=opts.api_key, max_body_bytes=opts.max_body_bytes)
    app.add_middleware(ErrorLog)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        what = {404: "no such endpoint", 405: "method not allowed for this endpoint"}.get(exc.status_code, str(exc.detail))
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return error(exc.status_code, f"{request.method} {request.url.path}: {what}", kind,
                     code={404: "not_found", 405: "method_not_allowed"}.get(exc.status_code))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        first_error = exc.errors()[0] if exc.errors() else {"loc": [], "msg": "invalid request"}
        if first_error.get("type") == "json_invalid":
            return error(400, json_error_message(await request.body()), code="invalid_json")
        where = ".".join(str(x) for x in first_error.get("loc", []) if x != "body")
        return error(400, f"{where or 'body'}: {first_error.get('msg')}", param=where or None)

    def pick(model: str | None) -> Served | JSONResponse:
        s = router.pick(model)
        return model_not_found(model or "") if s is None else s

    def admit(req) -> Served | JSONResponse:
        """An OpenAI-shaped request's agent, or the error for a parameter it cannot honour or an unknown model."""
        bad = req.unsupported()
        if bad:
            return error(400, bad[1], param=bad[0], code="unsupported_parameter")
        return pick(req.model)

    def empty() -> JSONResponse:
        return error(400, "the customer message is empty or only whitespace", param="message")

    @app.get("/health")
    async def health():
        drivers = [s.driver.health() for s in served]
        return {"status": "ok", "model": first.name, "method": first.agent.method, "device": first.agent.device,
                "batching": opts.batching, "max_batch": opts.max_batch if opts.batching else 1, **drivers[0],
                "batches_served": sum(d.get("batches_served", 0) for d in drivers),
                "cancelled_requests": state["cancelled"], "backend": opts.backend,
                "agents": {s.name: {"method": s.agent.method, "run": s.run, **d} for s, d in zip(served, drivers)},
                "split": router.split or None, "decode": opts.decode_spec().record()}

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": s.name, "object": "model", "created": 0, "owned_by": "supporttune",
                                            "method": s.agent.method} for s in served]}

    @app.post("/v1/reply", response_model=ReplyResponse)
    async def reply(req: ReplyRequest, request: Request):
        t0 = time.perf_counter()
        s = pick(req.model)
        if isinstance(s, JSONResponse):
            return s
        if not req.message.strip():
            return empty()
        prompt = Prompt(live_example(s.agent, req.message, req.brand))
        out = await s.driver.replies(request, prompt, Params(req.max_tokens or opts.max_new_tokens))
        if not isinstance(out, list):
            return out
        r, rid = out[0], f"reply-{uuid.uuid4().hex[:24]}"
        remember(rid, s, prompt.example, r.reply)
        return ReplyResponse(id=rid, model=s.name, reply=r.reply, sentiment=r.sentiment, priority=r.priority,
                             category=r.category, latency_ms=round(1000 * (time.perf_counter() - t0), 2))

    @app.post("/v1/chat/completions")
    async def chat_completions(req: ChatRequest, request: Request):
        s = admit(req)
        if isinstance(s, JSONResponse):
            return s
        last = max((i for i, m in enumerate(req.messages) if m.role == "user"), default=None)
        if last is None:
            return error(400, "messages: needs a user message", param="messages")
        instructions = req.instructions()
        if instructions and opts.system == "refuse":
            return error(400, "system messages are refused by this server (--system refuse): the agent answers with "
                              "the prompt it was trained with", param="messages", code="unsupported_parameter")
        if not req.messages[last].text().strip():
            return empty()
        # the conversation so far (user and assistant turns before the last user message) is the history
        history = [{"role": m.role, "content": m.text()} for m in req.messages[:last]
                   if m.role in ("user", "assistant") and m.text().strip()]
        temperature, warning = req.sampling()
        prompt = Prompt(live_example(s.agent, req.messages[last].text(), req.brand, history, instructions))
        params = Params(req.budget() or opts.max_new_tokens, temperature, req.n, req.stop, req.seed)
        cid = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        if req.stream:
            source = await s.driver.stream(prompt, params)
            if isinstance(source, JSONResponse):
                return source
            usage = bool((req.stream_options or {}).get("include_usage"))
            return StreamingResponse(_events(source, cid, s.name, usage, "chat",
                                             lambda r: remember(cid, s, prompt.example, r.reply)),
                                     media_type="text/event-stream")
        out = await s.driver.replies(request, prompt, params)
        if not isinstance(out, list):
            return out
        body = {"id": cid, "object": "chat.completion", "created": int(time.time()), "model": s.name,
                "choices": [{"index": i, "message": {"role": "assistant", "content": r.reply},
                             "finish_reason": r.finish_reason, "logprobs": None} for i, r in enumerate(out)],
                "usage": _usage(out),
                "supporttune": {"agent": s.name, "sentiment": out[0].sentiment, "priority": out[0].priority,
                                "category": out[0].category}}
        if warning:
            body["supporttune"]["warnings"] = [warning]
        remember(cid, s, prompt.example, out[0].reply)
        return body

    @app.post("/v1/feedback")
    async def feedback(req: FeedbackRequest):
        """Thumbs up/down (+ an optional corrected reply) for a response this server gave (feedback.py)."""
        served_row = recent.get(req.id)
        if served_row is None:
            return error(404, f"no recent response with id '{req.id}' (this server remembers its last "
                              f"{recent.size} responses)", param="id", code="response_not_found")
        path = store_for(opts.feedback, served_row.get("run"))
        if path is None:
            return error(503, "no feedback store: serve with --feedback FILE", "server_error", code="no_feedback_store")
        await asyncio.to_thread(append, path, record(req, served_row))
        return {"object": "feedback", "id": req.id, "model": served_row["model"], "rating": req.rating, "stored": True}

    add_completions(app, admit, opts, _events, _usage)
    return app


def _usage(out: list[Reply]) -> dict:
    prompt_tokens, completion = out[0].prompt_tokens, sum(r.completion_tokens for r in out)
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion, "total_tokens": prompt_tokens + completion}


async def _events(source, cid: str, model: str, usage: bool, shape: str, on_final=None):
    """The SSE stream of one reply (``shape``: chat or text completion): pieces, finish reason, [DONE]."""
    def piece(text: str, finish: str | None = None, use: dict | None = None) -> str:
        if shape == "chat":
            return chunk(cid, model, {"content": text} if text else {}, finish, use)
        return text_chunk(cid, model, text, finish, use)

    try:
        if shape == "chat":
            yield chunk(cid, model, {"role": "assistant", "content": ""})
        final = None
        try:
            async for item in source:
                if isinstance(item, str):
                    yield piece(item)
                else:
                    final = item
        except Exception as e:  # the stream has started: report in-band, OpenAI style
            yield f"data: {json.dumps(error_body(f'generation failed: {type(e).__name__}: {e}', 'server_error'))}\n\n"
        if final is not None:
            if on_final:
                on_final(final)
            yield piece("", final.finish_reason)
            if usage:
                yield piece("", use=_usage([final]))
        yield "data: [DONE]\n\n"
    finally:
        await source.aclose()


def serve(agents: list[Agent], host: str, port: int, opts: ServeOptions) -> None:
    import uvicorn

    from .console import log_to_terminal, open_host_warning, startup_line

    app = create_app(agents, opts)
    log_to_terminal()
    shown = "localhost" if host in ("127.0.0.1", "::1") else host
    print(startup_line([a.name for a in agents], [str(getattr(a, "run_dir", "") or a.name) for a in agents],
                       f"http://{shown}:{port}", bool(opts.api_key), opts.backend), flush=True)
    warn = open_host_warning(host, bool(opts.api_key))
    if warn:
        print(warn, flush=True)
    uvicorn.run(app, host=host, port=port, log_level="info")
