"""The HTTP service over real sockets on 127.0.0.1: endpoints, errors, the OpenAI client, load.

Streaming is in test_serve_stream.py, the hardening (limits, disconnects, OpenAI parameters) in
test_serve_hardening.py.
"""

import httpx
import pytest

from supporttune.inference.agent import load_agent
from supporttune.serve.loadtest import LocalServer, load
from supporttune.serve.config import ServeOptions
from supporttune.serve.server import create_app


Server = LocalServer


@pytest.fixture(scope="module")
def agent(tiny_run):
    return load_agent(tiny_run, device="cpu")


@pytest.fixture(scope="module")
def base_url(agent):
    app = create_app(agent, ServeOptions(api_key="sekret", max_new_tokens=8, max_body_bytes=16384))
    with Server(app) as url:
        yield url


AUTH = {"Authorization": "Bearer sekret"}


def test_health_and_openapi(base_url):
    h = httpx.get(f"{base_url}/health").json()
    assert h["status"] == "ok" and h["method"] == "lora"
    schema = httpx.get(f"{base_url}/openapi.json").json()
    assert {"/v1/reply", "/v1/chat/completions", "/v1/models", "/health"} <= set(schema["paths"])


def test_reply_endpoint(base_url):
    r = httpx.post(f"{base_url}/v1/reply", json={"message": "My parcel never arrived and I am furious!!", "brand": "ParcelPal"},
                   headers=AUTH, timeout=60)
    assert r.status_code == 200
    body = r.json()
    assert body["sentiment"] == "negative" and body["priority"] == "high" and body["category"] == "complaint"
    assert isinstance(body["reply"], str) and body["latency_ms"] > 0


@pytest.mark.parametrize("kwargs,status,kind", [
    ({"json": {"message": "hi"}}, 401, "authentication_error"),
    ({"json": {"message": "hi"}, "headers": {"Authorization": "Bearer wrong"}}, 401, "authentication_error"),
    ({"content": b"{not json", "headers": {**AUTH, "content-type": "application/json"}}, 400, "invalid_request_error"),
    ({"json": {"brand": "x"}, "headers": AUTH}, 400, "invalid_request_error"),
    ({"json": {"message": ""}, "headers": AUTH}, 400, "invalid_request_error"),
    ({"json": {"message": "x" * 20000}, "headers": AUTH}, 413, "request_too_large"),
    ({"json": {"message": "word " * 1500}, "headers": AUTH}, 400, "invalid_request_error"),  # > 1024 positions
])
def test_bad_requests_get_json_errors_and_server_survives(base_url, kwargs, status, kind):
    r = httpx.post(f"{base_url}/v1/reply", timeout=60, **kwargs)
    assert r.status_code == status and r.json()["error"]["type"] == kind
    assert set(r.json()["error"]) == {"message", "type", "param", "code"}  # OpenAI's error shape
    assert httpx.get(f"{base_url}/health").status_code == 200


def test_generation_error_is_500_and_server_keeps_serving(agent):
    original = agent.model.generate

    def boom(*a, **k):
        raise RuntimeError("cuda fell over")

    with Server(create_app(agent, ServeOptions(max_new_tokens=4, batcher="window"))) as url:
        agent.model.generate = boom
        try:
            r = httpx.post(f"{url}/v1/reply", json={"message": "hello there"}, timeout=60)
        finally:
            agent.model.generate = original
        assert r.status_code == 500 and "cuda fell over" in r.json()["error"]["message"]
        assert httpx.post(f"{url}/v1/reply", json={"message": "hello there"}, timeout=60).status_code == 200


def test_openai_client_works_unchanged(base_url):
    from openai import OpenAI

    client = OpenAI(base_url=f"{base_url}/v1", api_key="sekret")
    out = client.chat.completions.create(model="lora", max_tokens=6, temperature=0,
                                         messages=[{"role": "user", "content": "Where is my refund?"}],
                                         extra_body={"brand": "ShopNest"})
    assert out.choices[0].message.role == "assistant" and out.choices[0].finish_reason in {"stop", "length"}
    assert out.usage.completion_tokens <= 6 and out.usage.prompt_tokens > 10
    sampled = client.chat.completions.create(model="lora", max_tokens=4, temperature=0.8,
                                             messages=[{"role": "user", "content": "hi"}])
    assert sampled.choices[0].message.content is not None


@pytest.mark.slow  # 400 requests through the real model and sockets; the batching logic is tested in test_batcher.py
def test_load_200_requests_16_clients_zero_failures(agent):
    """Dynamic batching under load; prints p50/p95 latency and throughput (loopback only, bounded)."""
    results = {}
    for batching in (True, False):
        with Server(create_app(agent, ServeOptions(max_new_tokens=8, batching=batching, max_batch=16, batcher="window"))) as url:
            results[batching] = load(url, requests=200, clients=16, timeout=120, max_tokens=8)
            results[batching]["batches"] = httpx.get(f"{url}/health").json()["batches_served"]
        print(f"\nload test (tiny model, batching={'on' if batching else 'off'}): {results[batching]}")
    assert results[True]["requests"] == 200 and results[True]["failures"] == 0 and results[False]["failures"] == 0
    assert results[True]["batches"] < 200 and results[False]["batches"] == 200  # requests really were batched
