"""serve.Batcher without a model: concurrent requests share one generate call, within the limits.

``respond_batch`` (the model call) is replaced by a fake that records each call and answers message
``m`` with as many words as it may generate: ``m-0 m-1 ...``.
"""

import asyncio
import threading

import pytest

from supporttune import serve
from supporttune.respond import Reply
from supporttune.serve import Batcher, ServeOptions


class WordTokenizer:
    """One token per word: enough for the batcher's per-request truncation."""

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": text.split()}

    def decode(self, ids):
        return " ".join(ids)


class FakeAgent:
    tokenizer = WordTokenizer()


@pytest.fixture()
def calls(monkeypatch):
    """Every call of the fake model: (messages, max_new_tokens, temperature)."""
    seen = []
    lock = threading.Lock()

    def respond(agent, items, max_new_tokens, temperature=0.0):
        with lock:
            seen.append(([m for m, *_ in items], max_new_tokens, temperature))
        if any(m == "boom" for m, *_ in items):
            raise RuntimeError("cuda fell over")
        return [Reply(" ".join(f"{m}-{i}" for i in range(max_new_tokens)), "neutral", "low", "other", 10, max_new_tokens,
                      "length") for m, *_ in items]

    monkeypatch.setattr(serve, "respond_batch", respond)
    return seen


def _asker(reply):
    return reply.reply.split()[0].rsplit("-", 1)[0]


def _serve(opts, jobs, gap_s=0.0):
    """Submit (message, max_tokens, temperature) jobs, ``gap_s`` apart; returns (replies or errors, batch sizes)."""

    async def main():
        batcher = Batcher(FakeAgent(), opts)
        batcher.start()
        tasks = []
        for message, max_tokens, temperature in jobs:
            tasks.append(asyncio.create_task(batcher.submit(message, None, max_tokens, temperature)))
            if gap_s:
                await asyncio.sleep(gap_s)
            else:
                await asyncio.sleep(0)  # let the submission reach the queue, in order
        results = await asyncio.gather(*tasks, return_exceptions=True)
        await batcher.stop()
        return results, batcher.batches

    return asyncio.run(asyncio.wait_for(main(), 60))


def test_concurrent_requests_share_one_call_and_get_their_own_reply(calls):
    jobs = [(f"m{i}", 4, 0.0) for i in range(5)]
    replies, batches = _serve(ServeOptions(max_batch=5, max_wait_ms=2000), jobs)
    assert batches == [5] and calls == [([f"m{i}" for i in range(5)], 4, 0.0)]
    assert [_asker(r) for r in replies] == [f"m{i}" for i in range(5)]  # each request its own answer


def test_max_batch_caps_a_call(calls):
    replies, batches = _serve(ServeOptions(max_batch=2, max_wait_ms=200), [(f"m{i}", 4, 0.0) for i in range(5)])
    assert sorted(batches, reverse=True) == [2, 2, 1] and sum(batches) == 5
    assert sorted(m for c in calls for m in c[0]) == [f"m{i}" for i in range(5)] and all(len(c[0]) <= 2 for c in calls)
    assert [_asker(r) for r in replies] == [f"m{i}" for i in range(5)]


def test_without_batching_every_request_is_its_own_call(calls):
    _, batches = _serve(ServeOptions(batching=False, max_batch=16, max_wait_ms=2000), [(f"m{i}", 4, 0.0) for i in range(4)])
    assert batches == [1, 1, 1, 1] and [c[0] for c in calls] == [["m0"], ["m1"], ["m2"], ["m3"]]


def test_a_request_after_the_wait_window_starts_a_new_batch(calls):
    _, batches = _serve(ServeOptions(max_batch=16, max_wait_ms=5), [("early", 4, 0.0), ("late", 4, 0.0)], gap_s=0.3)
    assert batches == [1, 1] and [c[0] for c in calls] == [["early"], ["late"]]


def test_one_call_per_temperature_and_the_longest_budget(calls):
    jobs = [("a", 2, 0.0), ("b", 6, 0.0), ("c", 3, 0.7)]
    replies, batches = _serve(ServeOptions(max_batch=3, max_wait_ms=2000), jobs)
    assert batches == [3]
    assert sorted(calls, key=lambda c: c[2]) == [(["a", "b"], 6, 0.0), (["c"], 3, 0.7)]
    # greedy: a shorter budget is cut from the longer reply, and says it stopped for length
    assert (replies[0].reply, replies[0].completion_tokens, replies[0].finish_reason) == ("a-0 a-1", 2, "length")
    assert (replies[1].reply, replies[1].completion_tokens) == ("b-0 b-1 b-2 b-3 b-4 b-5", 6)
    assert replies[2].reply == "c-0 c-1 c-2"


def test_a_failed_call_fails_its_requests_and_the_batcher_goes_on(calls):
    results, batches = _serve(ServeOptions(max_batch=2, max_wait_ms=200), [("boom", 4, 0.0), ("x", 4, 0.0),
                                                                           ("after", 4, 0.0)])
    assert [type(r).__name__ for r in results[:2]] == ["RuntimeError", "RuntimeError"]
    assert str(results[0]) == "cuda fell over"
    assert isinstance(results[2], Reply) and _asker(results[2]) == "after"
    assert batches == [2, 1]
