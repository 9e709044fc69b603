"""The HTTP service over real sockets on 127.0.0.1: endpoints, errors, the OpenAI client, load."""

import asyncio
import socket
import statistics
import threading
import time

import httpx
import pytest
import uvicorn

from supporttune.generate import load_agent
from supporttune.serve import ServeOptions, create_app


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, app):
        self.port = _free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.time() + 30
        while not self.server.started:
            if time.time() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.05)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(timeout=10)


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
    assert {"/v1/reply", "/v1/chat/completions", "/health"} <= set(schema["paths"])


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
    ({"content": b"{not json", "headers": {**AUTH, "content-type": "application/json"}}, 422, "invalid_request_error"),
    ({"json": {"brand": "x"}, "headers": AUTH}, 422, "invalid_request_error"),
    ({"json": {"message": ""}, "headers": AUTH}, 422, "invalid_request_error"),
    ({"json": {"message": "x" * 20000}, "headers": AUTH}, 413, "request_too_large"),
    ({"json": {"message": "word " * 1500}, "headers": AUTH}, 422, "context_length_exceeded"),  # > 1024 positions
])
def test_bad_requests_get_json_errors_and_server_survives(base_url, kwargs, status, kind):
    r = httpx.post(f"{base_url}/v1/reply", timeout=60, **kwargs)
    assert r.status_code == status and r.json()["error"]["type"] == kind
    assert httpx.get(f"{base_url}/health").status_code == 200


def test_generation_error_is_500_and_server_keeps_serving(agent):
    original = agent.model.generate

    def boom(*a, **k):
        raise RuntimeError("cuda fell over")

    with Server(create_app(agent, ServeOptions(max_new_tokens=4))) as url:
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
    out = client.chat.completions.create(model="support", max_tokens=6, temperature=0,
                                         messages=[{"role": "user", "content": "Where is my refund?"}],
                                         extra_body={"brand": "ShopNest"})
    assert out.choices[0].message.role == "assistant" and out.choices[0].finish_reason in {"stop", "length"}
    assert out.usage.completion_tokens <= 6 and out.usage.prompt_tokens > 10
    sampled = client.chat.completions.create(model="support", max_tokens=4, temperature=0.8,
                                             messages=[{"role": "user", "content": "hi"}])
    assert sampled.choices[0].message.content is not None


def test_load_200_requests_16_clients_zero_failures(agent):
    """Dynamic batching under load; prints p50/p95 latency and throughput (loopback only, bounded)."""
    results = {}
    for batching in (True, False):
        with Server(create_app(agent, ServeOptions(max_new_tokens=8, batching=batching, max_batch=16))) as url:
            lat, failures = [], 0

            async def client(i, http):
                nonlocal failures
                for j in range(i, 200, 16):
                    t0 = time.perf_counter()
                    r = await http.post(f"{url}/v1/reply", json={"message": f"order {j} has not arrived, where is it?"})
                    lat.append(time.perf_counter() - t0)
                    failures += r.status_code != 200

            async def main():
                async with httpx.AsyncClient(timeout=120) as http:
                    await asyncio.gather(*(client(i, http) for i in range(16)))

            t0 = time.perf_counter()
            asyncio.run(main())
            wall = time.perf_counter() - t0
            health = httpx.get(f"{url}/health").json()
        lat.sort()
        results[batching] = {"requests": len(lat), "failures": failures, "p50_ms": 1000 * statistics.median(lat),
                             "p95_ms": 1000 * lat[int(0.95 * len(lat)) - 1], "rps": len(lat) / wall,
                             "batches": health["batches_served"]}
        print(f"\nload test (tiny model, batching={'on' if batching else 'off'}): {results[batching]}")
    assert results[True]["requests"] == 200 and results[True]["failures"] == 0 and results[False]["failures"] == 0
    assert results[True]["batches"] < 200 and results[False]["batches"] == 200  # requests really were batched
