"""Streaming chat completions (SSE, the openai client's stream=True), /v1/models, and the continuous batcher."""

import json

import httpx
import pytest

from supporttune.serve.loadtest import LocalServer
from supporttune.serve.config import ServeOptions
from supporttune.serve.server import create_app

from scripted import SCRIPT, scripted_agent

MESSAGES = [{"role": "user", "content": "My parcel never arrived, where is it?"}]


@pytest.fixture(scope="module")
def agent(tiny_run):
    return scripted_agent(tiny_run)


@pytest.fixture(scope="module")
def url(agent):
    with LocalServer(create_app(agent, ServeOptions(max_new_tokens=12, batcher="window"))) as u:
        yield u


def test_openai_client_streams_the_same_reply(url, agent):
    from openai import OpenAI

    client = OpenAI(base_url=f"{url}/v1", api_key="unused")
    whole = client.chat.completions.create(model="lora", messages=MESSAGES, max_tokens=12, temperature=0)
    chunks = list(client.chat.completions.create(model="lora", messages=MESSAGES, max_tokens=12, temperature=0,
                                                 stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content and SCRIPT.startswith(text) and len(text) > 20
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) > 5  # streamed in pieces
    assert chunks[0].choices[0].delta.role == "assistant"
    finals = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finals == [whole.choices[0].finish_reason]
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    assert [m.id for m in client.models.list().data] == [agent.name]


def test_raw_stream_is_server_sent_events_ending_with_done(url):
    with httpx.stream("POST", f"{url}/v1/chat/completions", timeout=60,
                      json={"messages": MESSAGES, "max_tokens": 6, "stream": True}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = [line for line in r.iter_lines() if line]
    assert all(e.startswith("data: ") for e in events) and events[-1] == "data: [DONE]"
    bodies = [json.loads(e[6:]) for e in events[:-1]]
    assert {b["object"] for b in bodies} == {"chat.completion.chunk"} and len({b["id"] for b in bodies}) == 1


def test_stream_stops_at_a_stop_string_like_the_plain_reply(url):
    plain = httpx.post(f"{url}/v1/chat/completions", json={"messages": MESSAGES, "max_tokens": 12}, timeout=60).json()
    content = plain["choices"][0]["message"]["content"]
    assert len(content) >= 6, content
    stop = content[len(content) // 2:len(content) // 2 + 2]
    body = {"messages": MESSAGES, "max_tokens": 12, "stop": [stop, "never-there"]}
    cut = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=60).json()["choices"][0]
    assert cut["message"]["content"] == content[:content.index(stop)].strip() and cut["finish_reason"] == "stop"
    with httpx.stream("POST", f"{url}/v1/chat/completions", json={**body, "stream": True}, timeout=60) as r:
        pieces = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: {")]
    assert "".join(p["choices"][0]["delta"].get("content") or "" for p in pieces if p["choices"]) == cut["message"]["content"]


def test_continuous_batcher_answers_and_streams(agent):
    """The CPU default: transformers' continuous-batching manager for greedy requests, a window batcher for sampled ones.

    The manager runs its own plain copy of the model, which the script does not reach: its replies
    are the random tiny model's (newlines, stripped to ''); the check is that both ways agree.
    """
    from openai import OpenAI

    with LocalServer(create_app(agent, ServeOptions(max_new_tokens=8))) as u:
        assert httpx.get(f"{u}/health").json()["batcher"] == "SplitBatcher"
        client = OpenAI(base_url=f"{u}/v1", api_key="unused")
        whole = client.chat.completions.create(model="lora", messages=MESSAGES, max_tokens=8)
        streamed = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
            model="lora", messages=MESSAGES, max_tokens=8, stream=True) if c.choices)
        assert streamed == whole.choices[0].message.content and whole.usage.completion_tokens == 8
        sampled = httpx.post(f"{u}/v1/chat/completions", json={"messages": MESSAGES, "temperature": 0.7}, timeout=60)
        content = sampled.json()["choices"][0]["message"]["content"]
        assert sampled.status_code == 200 and SCRIPT.startswith(content) and len(content) > 10  # the window path
