"""``POST /v1/completions``: a raw prompt in, OpenAI's (legacy) completions shape out, streaming too.

No prompt builder, no tagging: the text is continued as is, so this server can be the engine
behind another server's ``--backend`` (which sends the prompt its builder rendered). The prompt
is tokenized as OpenAI-compatible engines do (special tokens added unless the text starts with
BOS); ``max_tokens``, ``temperature``, ``n``, ``stop``, ``seed`` and ``stream`` behave as in chat.
"""

from __future__ import annotations

import time
import uuid
from typing import Callable

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from .api import CompletionRequest, error
from .config import ServeOptions
from .local import Params, Prompt


def add_completions(app: FastAPI, admit: Callable, opts: ServeOptions, events: Callable, usage: Callable) -> None:
    @app.post("/v1/completions")
    async def completions(req: CompletionRequest, request: Request):
        s = admit(req)  # the server's check of parameters and model, as for chat completions
        if isinstance(s, JSONResponse):
            return s
        text = req.text()
        if not text.strip():
            return error(400, "the prompt is empty or only whitespace", param="prompt")
        temperature, warning = req.sampling()
        params = Params(req.max_tokens or opts.max_new_tokens, temperature, req.n, req.stop, req.seed)
        cid = f"cmpl-{uuid.uuid4().hex[:24]}"
        if req.stream:
            source = await s.driver.stream(Prompt(raw=text), params)
            if isinstance(source, JSONResponse):
                return source
            with_usage = bool((req.stream_options or {}).get("include_usage"))
            return StreamingResponse(events(source, cid, s.name, with_usage, "text"), media_type="text/event-stream")
        out = await s.driver.replies(request, Prompt(raw=text), params)
        if not isinstance(out, list):
            return out
        body = {"id": cid, "object": "text_completion", "created": int(time.time()), "model": s.name,
                "choices": [{"index": i, "text": r.reply, "logprobs": None, "finish_reason": r.finish_reason}
                            for i, r in enumerate(out)], "usage": usage(out)}
        if warning:
            body["supporttune"] = {"warnings": [warning]}
        return body
