"""How `serve` turns concurrent requests into generation calls: two interchangeable batchers.

* ``WindowBatcher`` (default): requests wait at most ``max_wait_ms`` in a queue and are answered by
  one engine call (up to ``max_batch`` rows, padded to the compiled batch size on CUDA).
* ``ContinuousBatcher`` (``--batcher continuous``): transformers' continuous-batching manager
  (``model.init_continuous_batching()``, paged attention): requests join and leave the running
  batch at every decode step. Greedy only, on a copy of the engine's plain model; ``SplitBatcher``
  sends sampled requests to a window batcher beside it.
* A server-wide decoding strategy other than greedy (``--decode sample|beam|mbr``) always takes the
  window batcher; it applies to the requests that do not ask for a temperature > 0.
* ``auto`` (default): continuous on a CPU, where it doubled requests/s and cut p95 latency tenfold
  in the load test; the window batcher on a GPU (the compiled engine path; the GPU comparison is
  still to be run, docs/BENCHMARKS.md) and for prompt/prefix tuning, which the manager cannot run.

Both stream tokens into a job as they are made and drop jobs whose client went away: a job
cancelled before its batch starts is skipped, one cancelled mid-generation stops its row.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass, field

from ..inference.agent import Agent
from ..inference.mbr import DecodeSpec
from .respond import Reply, ReplyText, final_text, live_example, respond_batch


@dataclass
class Job:
    message: str
    brand: str | None
    history: list[dict]
    prompt: list[int]
    max_tokens: int
    temperature: float
    text: ReplyText
    future: asyncio.Future
    stream: asyncio.Queue | None = None  # text pieces, then None
    seed: int | None = None  # sampled with this seed, in a generate call of its own (n > 1: seed + choice index)
    cancelled: bool = False
    enqueued: float = field(default_factory=time.perf_counter)

    def done_generating(self) -> bool:
        return self.cancelled or self.text.stopped()

    def token(self, loop: asyncio.AbstractEventLoop, token: int) -> None:
        """Called from the generation thread for each new token."""
        piece = self.text.add(token)
        if piece and self.stream is not None:
            loop.call_soon_threadsafe(self.stream.put_nowait, piece)

    def finish(self, reply: Reply) -> None:
        """Called on the event loop once the job's row is complete."""
        text, reason, n = final_text(self.text.tokenizer, reply.token_ids or self.text.tokens, self.max_tokens, self.text.stop)
        if self.stream is not None:
            rest, reason, n = self.text.close()
            # token() queues pieces with call_soon_threadsafe; queue the rest and the end behind them, so a
            # finish called on the event loop (ContinuousBatcher's result handler) cannot overtake them
            loop = asyncio.get_running_loop()
            if rest:
                loop.call_soon(self.stream.put_nowait, rest)
            loop.call_soon(self.stream.put_nowait, None)
        if not self.future.done():
            self.future.set_result(Reply(text, reply.sentiment, reply.priority, reply.category, reply.prompt_tokens, n,
                                         reason, reply.token_ids))

    def fail(self, error: BaseException) -> None:
        if self.stream is not None:
            self.stream.put_nowait(None)
        if not self.future.done():
            self.future.set_exception(error)


class WindowBatcher:
    """Collects concurrent jobs for up to ``max_wait_ms`` and answers them with one engine call."""

    def __init__(self, agent: Agent, max_batch: int, max_wait_ms: float, decode: DecodeSpec | None = None):
        self.agent, self.max_batch, self.max_wait_ms = agent, max_batch, max_wait_ms
        # the server's strategy for requests that do not sample (None/greedy: respond_batch's own default)
        self.strategy = {"decode": decode} if decode is not None and decode.strategy != "greedy" else {}
        self.queue: asyncio.Queue[Job] = asyncio.Queue()
        self.batches: list[int] = []  # sizes, for tests and /health
        self.skipped = 0  # jobs cancelled before their batch started
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()

    async def submit(self, job: Job) -> None:
        await self.queue.put(job)

    async def _next_batch(self) -> list[Job]:
        jobs = [await self.queue.get()]
        deadline = time.perf_counter() + self.max_wait_ms / 1000
        while len(jobs) < self.max_batch:
            timeout = deadline - time.perf_counter()
            if timeout <= 0:
                break
            try:
                jobs.append(await asyncio.wait_for(self.queue.get(), timeout))
            except asyncio.TimeoutError:
                break
        live = [j for j in jobs if not j.cancelled]
        self.skipped += len(jobs) - len(live)
        return live

    async def _loop(self) -> None:
        while True:
            jobs = await self._next_batch()
            if not jobs:
                continue
            self.batches.append(len(jobs))
            groups: dict[tuple, list[Job]] = {}
            for j in jobs:  # one generate call per temperature (greedy requests share one); a seeded job alone,
                # so its reply does not depend on what else was queued with it
                seeded = j.seed is not None and j.temperature > 0
                groups.setdefault((j.temperature, j.seed, id(j)) if seeded else (j.temperature,), []).append(j)
            for key, group in groups.items():
                await self._run(group, key[0], key[1] if len(key) > 1 else None)

    async def _run(self, jobs: list[Job], temperature: float, seed: int | None = None) -> None:
        loop = asyncio.get_running_loop()
        try:
            replies = await asyncio.to_thread(
                respond_batch, self.agent, [(j.message, j.brand, j.history) for j in jobs], max(j.max_tokens for j in jobs),
                temperature, lambda row, token: jobs[row].token(loop, token), lambda row: jobs[row].done_generating(),
                [j.prompt for j in jobs], seed, **(self.strategy if temperature <= 0 else {}))
        except Exception as e:  # a generation error fails this batch, not the server
            for j in jobs:
                j.fail(e)
            return
        for j, r in zip(jobs, replies):
            j.finish(r)


class ContinuousBatcher:
    """transformers' continuous-batching manager behind the same submit() (greedy requests only)."""

    def __init__(self, agent: Agent, max_batch: int, max_new_tokens: int):
        from transformers import (
            AutoModelForCausalLM,
            ContinuousBatchingConfig,
            GenerationConfig,
        )

        from ..inference import slots

        kind = slots.fast_kind(agent.model)
        if kind not in ("merged", "dequantized", "base"):
            raise ValueError("--batcher continuous needs a weight adapter or a base model (prompt/prefix tuning "
                             "feed embeddings or key/value prefixes, which the manager cannot take); use --batcher window")
        self.agent = agent
        model = AutoModelForCausalLM.from_config(slots.plain_config(agent.model), dtype=slots.base_of(agent.model).dtype)
        model.load_state_dict(slots.plain_weights(agent.model, kind), strict=False)
        model.to(agent.device).eval()
        tok = agent.tokenizer
        config = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=tok.eos_token_id,
                                  pad_token_id=tok.pad_token_id)
        cb = ContinuousBatchingConfig(max_requests_per_batch=max_batch) if agent.device == "cuda" else \
            ContinuousBatchingConfig(block_size=32, num_blocks=64, max_batch_tokens=512, max_requests_per_batch=max_batch)
        self.manager = model.init_continuous_batching(generation_config=config, continuous_batching_config=cb)
        self.batches: list[int] = []
        self.skipped = 0
        self._ids = itertools.count()
        self._jobs: dict[str, Job] = {}

    def start(self) -> None:
        if self.agent.device == "cuda":
            self.manager.warmup()
        self.manager.start()

    async def stop(self) -> None:
        await asyncio.to_thread(self.manager.stop, True, 10)

    async def submit(self, job: Job) -> None:
        if job.temperature > 0:
            raise ValueError("the continuous batcher decodes greedily (SplitBatcher sends sampled requests elsewhere)")
        rid = f"job-{next(self._ids)}"
        self._jobs[rid] = job
        loop = asyncio.get_running_loop()
        seen = [0]
        ex = live_example(self.agent, job.message, job.brand, job.history)

        def on_result(out) -> None:  # on the event loop (register_result_handler uses call_soon_threadsafe)
            if rid not in self._jobs:
                return
            tokens = [t for t in out.generated_tokens if t != self.agent.tokenizer.eos_token_id]
            for t in tokens[seen[0]:]:
                job.token(loop, t)
            seen[0] = len(tokens)
            if job.done_generating() and not out.is_finished():
                self.manager.cancel_request(rid)
            if out.is_finished() or job.done_generating():
                self._jobs.pop(rid, None)
                if out.error:
                    job.fail(RuntimeError(out.error))
                else:
                    job.finish(Reply("", ex["sentiment"], ex["priority"], ex["category"], len(job.prompt), len(tokens),
                                     "stop", tokens))

        self.manager.register_result_handler(rid, on_result)
        self.manager.add_request(job.prompt, request_id=rid, max_new_tokens=job.max_tokens, streaming=True)
        self.batches.append(1)


class SplitBatcher:
    """Greedy requests to the continuous batcher, sampled ones to a window batcher (the manager decodes greedily)."""

    def __init__(self, continuous: ContinuousBatcher, window: WindowBatcher):
        self.continuous, self.window = continuous, window

    @property
    def batches(self) -> list[int]:
        return self.continuous.batches + self.window.batches

    @property
    def skipped(self) -> int:
        return self.continuous.skipped + self.window.skipped

    def start(self) -> None:
        self.continuous.start()
        self.window.start()

    async def stop(self) -> None:
        await self.window.stop()
        await self.continuous.stop()

    async def submit(self, job: Job) -> None:
        await (self.window if job.temperature > 0 else self.continuous).submit(job)


def make_batcher(agent: Agent, choice: str, max_batch: int, max_wait_ms: float, max_new_tokens: int,
                 decode: DecodeSpec | None = None):
    """``auto``: continuous batching where it was measured to win (CPU; weight adapters and base models),
    else the window batcher; ``continuous`` still sends sampled requests to a window batcher. A strategy
    other than greedy takes the window batcher (the continuous manager decodes greedily)."""
    from ..inference import slots

    if decode is not None and decode.strategy != "greedy":
        return WindowBatcher(agent, max_batch, max_wait_ms, decode)
    if choice == "auto":
        supported = slots.fast_kind(agent.model) in ("merged", "dequantized", "base")
        choice = "continuous" if agent.device == "cpu" and supported and max_batch > 1 else "window"
    window = WindowBatcher(agent, max_batch, max_wait_ms)
    if choice == "window":
        return window
    return SplitBatcher(ContinuousBatcher(agent, max_batch, max_new_tokens), window)
