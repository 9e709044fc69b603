"""Server hardening over real sockets: body limits for every transfer encoding, work dropped for clients
that went away, OpenAI parameters honoured or refused in OpenAI's error shape, 404/405, JSON errors that
say where, whitespace-only messages, and no reply ending in half a character."""

import socket
import time

import httpx
import pytest

from supporttune.inference.agent import load_agent
from supporttune.serve.loadtest import LocalServer
from supporttune.serve.config import ServeOptions
from supporttune.serve.server import create_app

from scripted import SCRIPT, make_scripted, scripted_agent

USER = [{"role": "user", "content": "Where is my parcel?"}]


@pytest.fixture(scope="module")
def agent(tiny_run):
    return scripted_agent(tiny_run)


@pytest.fixture(scope="module")
def url(agent):
    with LocalServer(create_app(agent, ServeOptions(max_new_tokens=40, max_body_bytes=64 * 1024, batcher="window"))) as u:
        yield u


def _error(r, status):
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


def test_chunked_body_over_the_limit_is_refused_while_reading(url):
    """5 MB sent chunked (no Content-Length): 413 as soon as 64 KB are read, not after the whole body."""
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"POST /v1/reply HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
        piece = b"x" * 16384
        sent, t0, reply = 0, time.time(), b""
        s.settimeout(0.05)
        while sent < 5_000_000 and b"\r\n\r\n" not in reply:
            try:
                s.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
                sent += len(piece)
            except OSError:  # the server answered and closed
                break
            try:
                reply += s.recv(65536)
            except socket.timeout:
                pass
        s.settimeout(10)
        while b"\r\n\r\n" not in reply:
            reply += s.recv(65536)
    assert reply.startswith(b"HTTP/1.1 413")
    assert sent < 1_000_000 and time.time() - t0 < 10


def test_content_length_over_the_limit_is_413(url):
    assert _error(httpx.post(f"{url}/v1/reply", json={"message": "x" * 70000}), 413)["type"] == "request_too_large"


@pytest.mark.parametrize("method,path,status", [("GET", "/v1/nope", 404), ("GET", "/v1/chat/completions", 405),
                                                ("DELETE", "/v1/reply", 405)])
def test_unknown_paths_and_methods_answer_in_openai_shape(url, method, path, status):
    err = _error(httpx.request(method, f"{url}{path}"), status)
    assert path in err["message"] and err["code"] in ("not_found", "method_not_allowed")


def test_json_errors_say_where(url):
    r = httpx.post(f"{url}/v1/chat/completions", content=b'{"messages": [{"role": "user", "content": "hi"},]}',
                   headers={"content-type": "application/json"})
    err = _error(r, 400)
    assert "line 1 column" in err["message"] and "character" in err["message"]


def test_whitespace_only_messages_are_refused_alike_on_both_endpoints(url):
    a = _error(httpx.post(f"{url}/v1/reply", json={"message": " \n\t "}), 400)
    b = _error(httpx.post(f"{url}/v1/chat/completions", json={"messages": [{"role": "user", "content": "  \n"}]}), 400)
    assert a["message"] == b["message"] and "whitespace" in a["message"]


def test_openai_parameters_are_honoured(url):
    def ask(**extra):
        r = httpx.post(f"{url}/v1/chat/completions", json={"messages": USER, **extra}, timeout=60)
        assert r.status_code == 200, r.text
        return r.json()

    full = ask()["choices"][0]["message"]["content"]
    assert full == SCRIPT
    two = ask(n=2)
    assert [c["index"] for c in two["choices"]] == [0, 1] and two["choices"][1]["message"]["content"] == SCRIPT
    cut = ask(stop=["ships"])["choices"][0]
    assert cut["message"]["content"] == "Sorry for the wait! Your parcel" and cut["finish_reason"] == "stop"
    short = ask(max_completion_tokens=3)
    assert short["usage"]["completion_tokens"] == 3 and short["choices"][0]["finish_reason"] == "length"
    parts = [{"role": "user", "content": [{"type": "text", "text": "Where is"}, {"type": "text", "text": "my parcel?"}]}]
    assert ask(messages=parts)["choices"][0]["message"]["content"] == SCRIPT


@pytest.mark.parametrize("extra,param", [({"n": 9}, "n"), ({"tools": [{"type": "function"}]}, "tools"),
                                         ({"logprobs": True}, "logprobs"), ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
                                         ({"n": 2, "stream": True}, "n"), ({"frobnicate": 1}, "frobnicate"),
                                         ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
                                          "messages[0].content")])
def test_unsupported_parameters_are_refused_by_name(url, extra, param):
    err = _error(httpx.post(f"{url}/v1/chat/completions", json={"messages": USER, **extra}), 400)
    assert err["param"] == param and err["type"] == "invalid_request_error"


def test_a_reply_cut_inside_a_character_never_ends_in_a_replacement_char(url, agent):
    ids = agent.tokenizer(SCRIPT, add_special_tokens=False)["input_ids"]
    cuts = [k for k in range(1, len(ids)) if agent.tokenizer.decode(ids[:k]).endswith("\ufffd")]
    assert cuts, "the script should contain a character split over several tokens"
    for k in cuts:
        r = httpx.post(f"{url}/v1/chat/completions", json={"messages": USER, "max_tokens": k}, timeout=60).json()
        text = r["choices"][0]["message"]["content"]
        assert not text.endswith("\ufffd") and SCRIPT.startswith(text)
        with httpx.stream("POST", f"{url}/v1/chat/completions", json={"messages": USER, "max_tokens": k, "stream": True},
                          timeout=60) as s:
            body = "".join(line for line in s.iter_lines())
        assert "\\ufffd" not in body and "\ufffd" not in body


def test_work_for_clients_that_went_away_is_dropped(tiny_run):
    """Six abandoned 300-token requests (0.03 s a step) must not delay the next request by their 9 s."""
    slow = load_agent(tiny_run, device="cpu")
    make_scripted(slow, SCRIPT * 30, delay_s=0.03)
    with LocalServer(create_app(slow, ServeOptions(max_new_tokens=300, batcher="window"))) as u:
        def abandon(i):
            try:
                httpx.post(f"{u}/v1/reply", json={"message": f"order {i}?", "max_tokens": 300}, timeout=0.5)
            except httpx.TimeoutException:
                return True
            return False

        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(6) as pool:
            assert all(pool.map(abandon, range(6)))
        t0 = time.time()
        r = httpx.post(f"{u}/v1/reply", json={"message": "still there?", "max_tokens": 5}, timeout=60)
        waited = time.time() - t0
        health = httpx.get(f"{u}/health").json()
    assert r.status_code == 200 and waited < 4, waited
    assert health["cancelled_requests"] >= 6
