"""Answering with a model loaded in this process: a request becomes batcher jobs, replies or a stream.

The server's endpoints speak to a *driver*: this one (the model here, batched by batcher.py) or
backend.py's (the finished prompt sent to another engine). Both take a ``Prompt`` (a live example
the prompt builder renders, or a raw completion prompt) and ``Params`` and return replies, an
OpenAI-shaped error, or None when the client went away (its jobs are then dropped).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import AsyncIterator

from fastapi import Request
from fastapi.responses import JSONResponse

from ..inference.agent import Agent
from ..inference.decode import DecodeSettings
from .api import error
from .batcher import Job, WindowBatcher, make_batcher
from .config import ServeOptions
from .respond import Reply, ReplyText, context_limit


@dataclass
class Params:
    """What a request asks of the generation (already resolved: budget, temperature, ...)."""

    max_tokens: int
    temperature: float = 0.0
    n: int = 1
    stop: list[str] = field(default_factory=list)
    seed: int | None = None


@dataclass
class Prompt:
    """A live example (``example``: tags, history, instructions; rendered by the prompt builder) or a raw prompt."""

    example: dict | None = None
    raw: str | None = None

    def ids(self, agent: Agent) -> list[int]:
        if self.example is not None:
            return agent.prompt_ids(self.example)
        return raw_ids(agent.tokenizer, self.raw or "")

    def tags(self) -> tuple[str, str, str]:
        ex = self.example or {}
        return ex.get("sentiment", ""), ex.get("priority", ""), ex.get("category", "")


def raw_ids(tokenizer, text: str) -> list[int]:
    """A raw prompt's tokens as an OpenAI-compatible engine makes them: the tokenizer's special tokens
    (BOS) added, unless the text already starts with them (a rendered chat template often does)."""
    bos = getattr(tokenizer, "bos_token", None)
    return tokenizer(text, add_special_tokens=not (bos and text.startswith(bos)))["input_ids"]


class LocalDriver:
    """One agent's model behind a batcher."""

    def __init__(self, agent: Agent, opts: ServeOptions, state: dict, batcher_choice: str | None = None):
        self.agent, self.opts, self.state = agent, opts, state
        self.max_batch = opts.max_batch if opts.batching else 1
        self.batcher = make_batcher(agent, batcher_choice or opts.batcher, self.max_batch, opts.max_wait_ms,
                                    opts.max_new_tokens, opts.decode_spec())
        self.limit = context_limit(agent)
        self.warmup_s = 0.0

    async def start(self) -> None:
        if isinstance(self.batcher, WindowBatcher):
            from ..inference.engine import engine_for

            settings = DecodeSettings(self.opts.max_new_tokens, self.max_batch)
            self.warmup_s = round(await asyncio.to_thread(engine_for(self.agent).warmup, self.max_batch,
                                                          self.opts.warmup_prompt_tokens, settings), 2)
        self.batcher.start()

    async def stop(self) -> None:
        await self.batcher.stop()

    def health(self) -> dict:
        return {"batcher": type(self.batcher).__name__, "batches_served": len(self.batcher.batches),
                "warmup_s": self.warmup_s, "skipped_jobs": self.batcher.skipped}

    async def submit(self, prompt: Prompt, params: Params, stream: bool) -> list[Job] | JSONResponse:
        ids = await asyncio.to_thread(prompt.ids, self.agent)
        if len(ids) + params.max_tokens > self.limit:
            return error(400, f"message too long: {len(ids)} prompt tokens + {params.max_tokens} new tokens exceed the "
                              f"model's context of {self.limit}", code="context_length_exceeded")
        loop = asyncio.get_running_loop()
        ex = prompt.example or {"input": prompt.raw or "", "brand": None, "history": []}
        jobs = []
        for i in range(params.n):
            seed = None if params.seed is None else params.seed + i  # n seeded choices: reproducible, not identical
            job = Job(ex["input"], ex.get("brand"), ex.get("history") or [], ids, params.max_tokens, params.temperature,
                      ReplyText(self.agent.tokenizer, params.max_tokens, params.stop), loop.create_future(),
                      asyncio.Queue() if stream else None, seed)
            try:
                await self.batcher.submit(job)
            except ValueError as e:
                for j in jobs:
                    j.cancelled = True
                return error(400, str(e), param="temperature")
            jobs.append(job)
        return jobs

    async def replies(self, request: Request, prompt: Prompt, params: Params) -> list[Reply] | JSONResponse | None:
        jobs = await self.submit(prompt, params, False)
        if isinstance(jobs, JSONResponse):
            return jobs
        done = asyncio.ensure_future(asyncio.gather(*(j.future for j in jobs)))
        gone = asyncio.ensure_future(disconnected(request))
        await asyncio.wait({done, gone}, return_when=asyncio.FIRST_COMPLETED)
        if not done.done():
            for j in jobs:
                j.cancelled = True
            self.state["cancelled"] += len(jobs)
            done.cancel()
            return None
        gone.cancel()
        try:
            out = done.result()
        except Exception as e:
            return error(500, f"generation failed: {type(e).__name__}: {e}", "server_error")
        sentiment, priority, category = prompt.tags()
        return [r if prompt.example is not None else Reply(r.reply, sentiment, priority, category, r.prompt_tokens,
                                                           r.completion_tokens, r.finish_reason) for r in out]

    async def stream(self, prompt: Prompt, params: Params) -> AsyncIterator[str | Reply] | JSONResponse:
        """Text pieces as they are safe to show, then the finished Reply (raises if generation failed)."""
        jobs = await self.submit(prompt, params, True)
        if isinstance(jobs, JSONResponse):
            return jobs
        return self._pieces(jobs[0])

    async def _pieces(self, job: Job) -> AsyncIterator[str | Reply]:
        finished = False
        try:
            while (piece := await job.stream.get()) is not None:
                yield piece
            finished = True
            yield await job.future
        finally:
            if not finished:  # the client went away mid-stream
                job.cancelled = True
                self.state["cancelled"] += 1


async def disconnected(request: Request) -> None:
    """Returns once the client has closed the connection (the body was read already, by the guard)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return
