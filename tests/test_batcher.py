"""batcher.py without a model: the window batcher's calls, limits, streams and failures; the batcher choice.

``respond_batch`` (the model call) is replaced by a fake that records each call and answers message
``m`` with as many words as it may generate: ``m-0 m-1 ...`` (one token per word), streaming them.
The continuous batcher runs transformers' manager on a real model: see test_serve_stream.py.
"""

import asyncio
import threading
from types import SimpleNamespace

import pytest

from supporttune.serve import batcher as batching
from supporttune.serve.batcher import Job, WindowBatcher, make_batcher
from supporttune.serve.respond import Reply, ReplyText


class WordTokenizer:
    """One token per word (id 0 is EOS): enough for the jobs' final text and streaming."""

    eos_token_id = 0

    def __init__(self):
        self.words = ["</s>"]

    def id(self, word):
        if word not in self.words:
            self.words.append(word)
        return self.words.index(word)

    def decode(self, ids, skip_special_tokens=True):
        return " ".join(self.words[i] for i in ids if not (skip_special_tokens and i == 0))


TOK = WordTokenizer()
AGENT = SimpleNamespace(tokenizer=TOK, device="cpu", model=None)


@pytest.fixture()
def calls(monkeypatch):
    """Every call of the fake model: (messages, max_new_tokens, temperature)."""
    seen = []
    lock = threading.Lock()

    def respond(agent, items, max_new_tokens, temperature=0.0, on_token=None, should_stop=None, prompts=None, seed=None):
        with lock:
            seen.append(([m for m, *_ in items], max_new_tokens, temperature))
        if any(m == "boom" for m, *_ in items):
            raise RuntimeError("cuda fell over")
        replies = []
        for row, (m, *_) in enumerate(items):
            ids = []
            for i in range(max_new_tokens):
                if should_stop and should_stop(row):
                    break
                ids.append(TOK.id(f"{m}-{i}"))
                if on_token:
                    on_token(row, ids[-1])
            replies.append(Reply(TOK.decode(ids), "neutral", "low", "other", len(prompts[row]), len(ids), "length", ids))
        return replies

    monkeypatch.setattr(batching, "respond_batch", respond)
    return seen


def _job(loop, message, max_tokens, temperature=0.0, stream=False, stop=None):
    return Job(message, None, [], [1, 2, 3], max_tokens, temperature, ReplyText(TOK, max_tokens, stop),
               loop.create_future(), asyncio.Queue() if stream else None)


def _serve(max_batch, max_wait_ms, jobs, gap_s=0.0, cancel=()):
    """Submit (message, max_tokens, temperature) jobs, ``gap_s`` apart (jobs named in ``cancel`` are cancelled
    right away); returns (replies or errors, batch sizes, skipped, the jobs)."""

    async def main():
        loop = asyncio.get_running_loop()
        b = WindowBatcher(AGENT, max_batch, max_wait_ms)
        b.start()
        made = [_job(loop, *j) for j in jobs]
        for job in made:
            job.cancelled = job.message in cancel
            await b.submit(job)
            if gap_s:
                await asyncio.sleep(gap_s)
        live = [j.future for j in made if not j.cancelled]
        results = await asyncio.gather(*live, return_exceptions=True)
        await b.stop()
        return results, b.batches, b.skipped, made

    return asyncio.run(asyncio.wait_for(main(), 60))


def _asker(reply):
    return reply.reply.split()[0].rsplit("-", 1)[0]


def test_concurrent_requests_share_one_call_and_get_their_own_reply(calls):
    replies, batches, _, _ = _serve(5, 2000, [(f"m{i}", 4) for i in range(5)])
    assert batches == [5] and calls == [([f"m{i}" for i in range(5)], 4, 0.0)]
    assert [_asker(r) for r in replies] == [f"m{i}" for i in range(5)]  # each request its own answer
    assert replies[0].reply == "m0-0 m0-1 m0-2 m0-3" and replies[0].completion_tokens == 4


def test_max_batch_caps_a_call(calls):
    replies, batches, _, _ = _serve(2, 200, [(f"m{i}", 4) for i in range(5)])
    assert batches == [2, 2, 1] and [c[0] for c in calls] == [["m0", "m1"], ["m2", "m3"], ["m4"]]
    assert [_asker(r) for r in replies] == [f"m{i}" for i in range(5)]


def test_a_batch_of_one_is_every_request_its_own_call(calls):  # what `serve --no-batching` uses
    _, batches, _, _ = _serve(1, 2000, [(f"m{i}", 4) for i in range(4)])
    assert batches == [1, 1, 1, 1] and [c[0] for c in calls] == [["m0"], ["m1"], ["m2"], ["m3"]]


def test_a_request_after_the_wait_window_starts_a_new_batch(calls):
    _, batches, _, _ = _serve(16, 5, [("early", 4), ("late", 4)], gap_s=0.3)
    assert batches == [1, 1] and [c[0] for c in calls] == [["early"], ["late"]]


def test_one_call_per_temperature_and_each_request_cut_to_its_budget(calls):
    replies, batches, _, _ = _serve(3, 2000, [("a", 2, 0.0), ("b", 6, 0.0), ("c", 3, 0.7)])
    assert batches == [3]
    assert sorted(calls, key=lambda c: c[2]) == [(["a", "b"], 6, 0.0), (["c"], 3, 0.7)]  # greedy ones share a call
    assert (replies[0].reply, replies[0].completion_tokens, replies[0].finish_reason) == ("a-0 a-1", 2, "length")
    assert (replies[1].reply, replies[1].completion_tokens) == ("b-0 b-1 b-2 b-3 b-4 b-5", 6)
    assert replies[2].reply == "c-0 c-1 c-2"


def test_a_cancelled_request_is_skipped_before_its_batch(calls):
    replies, batches, skipped, _ = _serve(3, 2000, [("gone", 4), ("kept", 4), ("also", 4)], cancel={"gone"})
    assert skipped == 1 and batches == [2] and calls == [(["kept", "also"], 4, 0.0)]
    assert [_asker(r) for r in replies] == ["kept", "also"]


def test_a_stream_gets_the_pieces_of_its_reply_then_the_end(calls):
    async def main():
        loop = asyncio.get_running_loop()
        b = WindowBatcher(AGENT, 4, 200)
        b.start()
        jobs = [_job(loop, "s", 3, stream=True, stop=["s-2"]),  # a stop string: the third word never shows
                _job(loop, "t", 2, stream=True, stop=["t-1 and more"])]  # "t-1" waits (it may start the stop
        for job in jobs:                                                  # string) until the reply is complete
            await b.submit(job)
        out = []
        for job in jobs:
            reply, pieces = await job.future, []
            while (piece := await job.stream.get()) is not None:
                pieces.append(piece)
            out.append((reply, pieces))
        await b.stop()
        return out

    (s, s_pieces), (t, t_pieces) = asyncio.run(asyncio.wait_for(main(), 60))
    assert s_pieces == ["s-0", " s-1"] and (s.reply, s.finish_reason) == ("s-0 s-1", "stop")
    assert t_pieces == ["t-0", " t-1"] and (t.reply, t.finish_reason) == ("t-0 t-1", "length")


def test_pieces_streamed_from_the_event_loop_arrive_before_the_end():
    """What ContinuousBatcher does: token() and finish() from a callback on the event loop itself."""
    async def main():
        loop = asyncio.get_running_loop()
        job = _job(loop, "c", 3, stream=True)
        ids = [TOK.id(f"c-{i}") for i in range(3)]
        for token in ids:
            job.token(loop, token)
        job.finish(Reply("", "neutral", "low", "other", 3, 3, "stop", ids))
        pieces = []
        while (piece := await job.stream.get()) is not None:
            pieces.append(piece)
        return pieces, await job.future

    pieces, reply = asyncio.run(asyncio.wait_for(main(), 10))
    assert "".join(pieces) == reply.reply == "c-0 c-1 c-2"


def test_a_failed_call_fails_its_requests_and_the_batcher_goes_on(calls):
    results, batches, _, _ = _serve(2, 200, [("boom", 4), ("x", 4), ("after", 4)])
    assert [type(r).__name__ for r in results[:2]] == ["RuntimeError", "RuntimeError"]
    assert str(results[0]) == "cuda fell over"
    assert isinstance(results[2], Reply) and _asker(results[2]) == "after"
    assert batches == [2, 1]


def _model(peft_type=None):
    config = SimpleNamespace(peft_type=SimpleNamespace(value=peft_type)) if peft_type else None
    return SimpleNamespace(active_peft_config=config, modules=lambda: [], get_base_model=lambda: SimpleNamespace(modules=lambda: []))


@pytest.mark.parametrize("device,peft_type,choice,max_batch", [
    ("cpu", "PROMPT_TUNING", "auto", 16),  # the manager cannot take virtual tokens
    ("cpu", "PREFIX_TUNING", "auto", 16),
    ("cuda", "LORA", "auto", 16),  # the compiled engine path on a GPU
    ("cpu", "LORA", "auto", 1),  # no batching asked for
    ("cpu", "LORA", "window", 16),
])
def test_the_window_batcher_where_continuous_batching_cannot_or_should_not_run(device, peft_type, choice, max_batch):
    b = make_batcher(SimpleNamespace(model=_model(peft_type), device=device), choice, max_batch, 10, 64)
    assert type(b) is WindowBatcher and (b.max_batch, b.max_wait_ms) == (max_batch, 10)


def test_a_seeded_sampled_job_gets_a_call_of_its_own(calls):
    """Its reply must not depend on what else was queued with it (the seed is set right before the call)."""

    async def main():
        loop = asyncio.get_running_loop()
        b = WindowBatcher(AGENT, 16, 500)
        b.start()
        made = [_job(loop, "a", 2, 0.7), _job(loop, "b", 2, 0.7), _job(loop, "c", 2, 0.7), _job(loop, "d", 2, 0.0)]
        made[1].seed, made[2].seed = 5, 6
        for job in made:
            await b.submit(job)
        await asyncio.gather(*(j.future for j in made))
        await b.stop()

    asyncio.run(asyncio.wait_for(main(), 60))
    assert sorted(c[0] for c in calls) == [["a"], ["b"], ["c"], ["d"]]
