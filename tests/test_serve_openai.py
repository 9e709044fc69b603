"""Serve says what it does (issue 24): system messages used (or refused by name), seeds reproduce samples,
unknown models get OpenAI's 404, n > 1 samples as OpenAI does, 4xx answers are logged with their reason,
one start-up line, a warning for an open port with no key, and exactly the libraries' noise filtered."""

import logging
import warnings

import httpx
import pytest

from supporttune.inference.agent import load_agent
from supporttune.serve.config import ServeOptions
from supporttune.serve.console import open_host_warning, quiet_libraries, startup_line
from supporttune.serve.loadtest import LocalServer
from supporttune.serve.server import create_app

USER = [{"role": "user", "content": "Where is my parcel?"}]


@pytest.fixture(scope="module")
def agent(tiny_run):
    return load_agent(tiny_run, device="cpu")  # unscripted: its sampled replies vary with the seed


@pytest.fixture(scope="module")
def url(agent):
    with LocalServer(create_app(agent, ServeOptions(max_new_tokens=6, batcher="window"))) as u:
        yield u


def chat(url, **body):
    return httpx.post(f"{url}/v1/chat/completions", json={"messages": USER, **body}, timeout=60)


def test_a_system_message_is_added_to_the_trained_prompt(url):
    plain = chat(url).json()["usage"]["prompt_tokens"]
    system = [{"role": "system", "content": "Always answer in French."}, *USER]
    used = chat(url, messages=system).json()["usage"]["prompt_tokens"]
    assert used > plain + 4  # the instruction's tokens are in the prompt, nothing was dropped


def test_system_refuse_mode_names_it(agent):
    with LocalServer(create_app(agent, ServeOptions(max_new_tokens=4, batcher="window", system="refuse"))) as u:
        r = chat(u, messages=[{"role": "system", "content": "Be brief."}, *USER])
        assert r.status_code == 400 and "system" in r.json()["error"]["message"]
        assert chat(u).status_code == 200


def test_seed_reproduces_a_sampled_reply(url):
    def sample(seed):
        return chat(url, temperature=1.0, seed=seed, max_tokens=6).json()["choices"][0]["message"]["content"]

    a, b = sample(7), sample(7)
    assert a == b
    assert len({sample(s) for s in (1, 2, 3, 4)}) > 1  # the seed matters: samples do vary
    two = chat(url, n=2, temperature=1.0, seed=5, max_tokens=6).json()["choices"]
    again = chat(url, n=2, temperature=1.0, seed=5, max_tokens=6).json()["choices"]
    assert [c["message"]["content"] for c in two] == [c["message"]["content"] for c in again]


def test_n_above_one_samples_unless_told_greedy(url):
    sampled = chat(url, n=4, max_tokens=6).json()
    assert len({c["message"]["content"] for c in sampled["choices"]}) > 1 and "warnings" not in sampled["supporttune"]
    greedy = chat(url, n=2, temperature=0).json()
    assert greedy["choices"][0]["message"] == greedy["choices"][1]["message"]
    assert "identical" in greedy["supporttune"]["warnings"][0]


def test_unknown_model_is_openais_404_and_models_lists_what_is_served(url, agent, caplog):
    listed = httpx.get(f"{url}/v1/models").json()
    assert [m["id"] for m in listed["data"]] == [agent.name]
    assert chat(url, model=agent.name).status_code == 200
    with caplog.at_level(logging.WARNING, logger="supporttune.serve"):
        r = chat(url, model="gpt-4o")
    assert r.status_code == 404
    assert r.json() == {"error": {"message": "The model `gpt-4o` does not exist or you do not have access to it.",
                                  "type": "invalid_request_error", "param": "model", "code": "model_not_found"}}
    lines = [rec.getMessage() for rec in caplog.records if rec.name == "supporttune.serve"]
    assert any(line.startswith("404 POST /v1/chat/completions: The model `gpt-4o`") for line in lines), lines


def test_every_4xx_is_logged_once_with_its_reason(url, caplog):
    with caplog.at_level(logging.WARNING, logger="supporttune.serve"):
        chat(url, logprobs=True)
        httpx.get(f"{url}/v1/nope")
    lines = [rec.getMessage() for rec in caplog.records if rec.name == "supporttune.serve"]
    assert len(lines) == 2 and "400 POST /v1/chat/completions: 'logprobs'" in lines[0] and lines[1].startswith("404 GET /v1/nope")


def test_startup_line_and_open_host_warning():
    line = startup_line(["lora"], ["runs/lora"], "http://localhost:8000", api_key=False)
    assert "\n" not in line and "lora (runs/lora)" in line and "http://localhost:8000/v1" in line and "no API key" in line
    assert "API key required" in startup_line(["a", "b"], ["ra", "rb"], "http://x:1", api_key=True)
    assert "--api-key" in open_host_warning("0.0.0.0", api_key=False)
    assert open_host_warning("0.0.0.0", api_key=True) is None and open_host_warning("127.0.0.1", False) is None


def test_exactly_the_named_library_warnings_are_filtered():
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        quiet_libraries()
        warnings.warn_explicit("The PEFT config's `base_model_name_or_path` was renamed from 'a' to 'b'. Please ...",
                               UserWarning, "mapping_func.py", 1, module="peft.mapping_func")
        warnings.warn_explicit("`is_gradient_checkpointing` is deprecated and will be removed in v6.",
                               FutureWarning, "modeling_utils.py", 1, module="transformers.modeling_utils")
        warnings.warn_explicit("something else entirely", UserWarning, "mapping_func.py", 2, module="peft.mapping_func")
    assert [str(w.message) for w in seen] == ["something else entirely"]
