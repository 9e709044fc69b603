"""`serve --backend URL`: our prompt builder in front of another OpenAI-compatible server, over real sockets.

The backend is a second supporttune server (its /v1/completions takes the finished prompt); the
front server holds only the tokenizer. Greedy replies and prompt token counts must equal those of
serving the run directly, and every way a backend fails must come back as a clean OpenAI error.
"""

import json
import socket
import threading
import time

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import PlainTextResponse

from supporttune.inference.agent import Agent, load_agent
from supporttune.models.loading import load_tokenizer
from supporttune.rundir import exemplar_index, read_record
from supporttune.serve.config import ServeOptions
from supporttune.serve.loadtest import LocalServer
from supporttune.serve.server import create_app

from scripted import SCRIPT, make_scripted

CHAT = {"messages": [{"role": "user", "content": "My parcel never arrived, where is it?"},
                     {"role": "assistant", "content": "Sorry! Which order?"},
                     {"role": "user", "content": "Order 5 from last week"}], "brand": "ParcelPal", "max_tokens": 12}


def tokenizer_only(run):
    record = read_record(run)
    tok = load_tokenizer(record.model_ref)
    return Agent(None, tok, record.spec, "cpu", record.variant, record.method, exemplar_index(run, record.spec))


@pytest.fixture(scope="module")
def direct(tiny_run):
    agent = load_agent(tiny_run, device="cpu")
    make_scripted(agent, SCRIPT + " " + SCRIPT)
    with LocalServer(create_app(agent, ServeOptions(max_new_tokens=12, batcher="window"))) as u:
        yield u


@pytest.fixture(scope="module")
def front(tiny_run, direct):
    with LocalServer(create_app(tokenizer_only(tiny_run), ServeOptions(backend=direct, max_new_tokens=12))) as u:
        yield u


def test_completions_endpoint_continues_a_raw_prompt(direct):
    r = httpx.post(f"{direct}/v1/completions", json={"model": "lora", "prompt": "Hello, where is my parcel?", "max_tokens": 5}, timeout=60)
    body = r.json()
    assert r.status_code == 200 and body["object"] == "text_completion"
    assert body["choices"][0]["finish_reason"] == "length" and SCRIPT.startswith(body["choices"][0]["text"])
    assert body["usage"]["completion_tokens"] == 5 and body["usage"]["prompt_tokens"] >= 1
    with httpx.stream("POST", f"{direct}/v1/completions", json={"prompt": "Hello, where is my parcel?", "max_tokens": 8, "stream": True},
                      timeout=60) as s:
        events = [json.loads(line[6:]) for line in s.iter_lines() if line.startswith("data: {")]
    streamed = "".join(e["choices"][0]["text"] for e in events if e["choices"])
    plain = httpx.post(f"{direct}/v1/completions", json={"prompt": "Hello, where is my parcel?", "max_tokens": 8}, timeout=60).json()
    assert streamed == plain["choices"][0]["text"] and events[-1]["choices"][0]["finish_reason"] == "length"
    bad = httpx.post(f"{direct}/v1/completions", json={"prompt": "Hello, where is my parcel?", "echo": True}, timeout=60)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "echo"


def test_backend_gives_the_same_reply_as_serving_the_run(direct, front):
    a = httpx.post(f"{direct}/v1/chat/completions", json=CHAT, timeout=60).json()
    b = httpx.post(f"{front}/v1/chat/completions", json=CHAT, timeout=60).json()
    assert b["choices"][0]["message"]["content"] == a["choices"][0]["message"]["content"] != ""
    assert b["usage"] == a["usage"]  # the backend tokenized exactly the prompt the run was trained with
    assert b["supporttune"]["category"] == a["supporttune"]["category"]
    with httpx.stream("POST", f"{front}/v1/chat/completions", json={**CHAT, "stream": True}, timeout=60) as s:
        events = [json.loads(line[6:]) for line in s.iter_lines() if line.startswith("data: {")]
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e["choices"])
    assert text == a["choices"][0]["message"]["content"]
    assert httpx.get(f"{front}/health").json()["batcher"] == "backend"


def _fake_backend(mode: str) -> FastAPI:
    app = FastAPI()

    @app.get("/v1/models")
    def models():
        return {"data": [{"id": "fake"}]}

    @app.post("/v1/completions")
    def completions():
        if mode == "500":
            return PlainTextResponse('{"error": {"message": "CUDA out of memory"}}', status_code=500)
        if mode == "garbage":
            return PlainTextResponse("<html>proxy error</html>", status_code=200)
        return {"choices": "nope"}

    return app


class Silent:
    """A TCP server that accepts connections and never answers (a hung backend)."""

    def __enter__(self) -> str:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.conns = []
        threading.Thread(target=self._accept, daemon=True).start()
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _accept(self):
        try:
            while True:
                self.conns.append(self.sock.accept()[0])
        except OSError:
            pass

    def __exit__(self, *exc):
        self.sock.close()
        for c in self.conns:
            c.close()


def _closed_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


@pytest.mark.parametrize("case,status,code", [("refused", 502, "backend_unreachable"), ("silent", 504, "backend_timeout"),
                                              ("500", 502, "backend_error"), ("garbage", 502, "backend_bad_response"),
                                              ("shape", 502, "backend_bad_response")])
def test_each_backend_failure_is_a_clean_error(tiny_run, case, status, code):
    agent = tokenizer_only(tiny_run)

    def check(backend_url):
        opts = ServeOptions(backend=backend_url, backend_timeout_s=0.5, backend_model="fake")
        with LocalServer(create_app(agent, opts)) as u:
            for stream in (False, True):
                t0 = time.time()
                r = httpx.post(f"{u}/v1/chat/completions", json={**CHAT, "stream": stream}, timeout=30)
                assert time.time() - t0 < 5
                assert r.status_code == status, r.text
                err = r.json()["error"]
                assert err["code"] == code and set(err) == {"message", "type", "param", "code"}
            assert httpx.get(f"{u}/health").status_code == 200

    if case == "refused":
        check(_closed_port())
    elif case == "silent":
        with Silent() as url:
            check(url)
    else:
        with LocalServer(_fake_backend(case)) as url:
            check(url)
