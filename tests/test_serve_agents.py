"""Several agents in one server (issue 25 part 4): the request's model picks the agent, a traffic split
routes requests that name none, feedback is stored and read back, adapters of one base share it."""

import httpx
import pytest

from supporttune.inference.agent import load_agent
from supporttune.serve.agents import load_agents
from supporttune.serve.config import ServeOptions
from supporttune.serve.feedback import read_feedback
from supporttune.serve.loadtest import LocalServer
from supporttune.serve.respond import respond_batch
from supporttune.serve.router import Router, Served, agent_names, parse_split
from supporttune.serve.server import create_app

from scripted import make_scripted

A_SAYS, B_SAYS = "Agent A here, your refund is on its way.", "Agent B speaking: the parcel left today."


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return tmp_path_factory.mktemp("fb") / "feedback.jsonl"


@pytest.fixture(scope="module")
def url(tiny_run, store):
    agents = []
    for name, text in (("a", A_SAYS), ("b", B_SAYS)):
        agent = load_agent(tiny_run, device="cpu")
        make_scripted(agent, text)
        agent.name = name
        agents.append(agent)
    opts = ServeOptions(max_new_tokens=16, batcher="window", split="a=90,b=10", feedback=store)
    with LocalServer(create_app(agents, opts)) as u:
        yield u


def ask(url, **body):
    return httpx.post(f"{url}/v1/chat/completions", json={"messages": [{"role": "user", "content": "Where is my refund?"}],
                                                          **body}, timeout=60)


def test_two_agents_answer_by_model(url):
    assert [m["id"] for m in httpx.get(f"{url}/v1/models").json()["data"]] == ["a", "b"]
    a, b = ask(url, model="a").json(), ask(url, model="b").json()
    assert (a["model"], a["choices"][0]["message"]["content"]) == ("a", A_SAYS)
    assert (b["model"], b["choices"][0]["message"]["content"]) == ("b", B_SAYS)
    assert ask(url, model="c").json()["error"]["code"] == "model_not_found"


@pytest.mark.slow
def test_split_routes_about_the_requested_share_over_200_requests(url):
    chosen = [httpx.post(f"{url}/v1/reply", json={"message": f"order {i}?", "max_tokens": 1}, timeout=60).json()["model"]
              for i in range(200)]
    assert set(chosen) == {"a", "b"} and 160 <= chosen.count("a") <= 194  # 90% +- 4.5 standard deviations


def test_router_split_shares_and_bad_splits():
    router = Router([Served("a", None, None), Served("b", None, None)], parse_split("a=90,b=10", ["a", "b"]), seed=1)
    picks = [router.pick(None).name for _ in range(10000)]
    assert 0.88 < picks.count("a") / 10000 < 0.92 and router.pick("b").name == "b" and router.pick("x") is None
    for bad in ("a=90,c=10", "a:90", "a=-1", "a=0,b=0", "a=x"):
        with pytest.raises(ValueError, match="--split"):
            parse_split(bad, ["a", "b"])
    assert agent_names(["runs/x", "runs/y", "more/x"], ["lora", "lora", "lora"]) == ["x", "y", "x-2"]


def test_feedback_is_stored_and_read_back(url, store):
    r = ask(url, model="b").json()
    ok = httpx.post(f"{url}/v1/feedback", json={"id": r["id"], "rating": "down", "correction": "It ships tomorrow."})
    assert ok.status_code == 200 and ok.json()["stored"] is True
    reply = httpx.post(f"{url}/v1/reply", json={"message": "thanks!", "model": "a"}, timeout=60).json()
    assert httpx.post(f"{url}/v1/feedback", json={"id": reply["id"], "rating": "up"}).status_code == 200
    rows = read_feedback(store)
    assert [(x["id"], x["model"], x["rating"]) for x in rows[-2:]] == [(r["id"], "b", "down"), (reply["id"], "a", "up")]
    assert rows[-2]["correction"] == "It ships tomorrow." and rows[-2]["reply"] == B_SAYS
    assert rows[-2]["message"] == "Where is my refund?" and rows[-1]["correction"] is None
    assert rows[-2]["instructions"] is None  # no system message in the request (kept for the export)
    assert httpx.post(f"{url}/v1/feedback", json={"id": "nope", "rating": "up"}).json()["error"]["code"] == "response_not_found"
    assert httpx.post(f"{url}/v1/feedback", json={"id": r["id"], "rating": "meh"}).status_code == 400


@pytest.mark.slow
def test_adapters_of_one_base_share_it_and_answer_as_if_alone(tiny_runs):
    runs = [tiny_runs("lora")[0].out, tiny_runs("dora")[0].out]
    shared = load_agents(runs, device="cpu")
    assert shared[0].model is shared[1].model and [a.name for a in shared] == ["lora", "dora"]
    items = [("My parcel never arrived!", "ParcelPal", [])]
    for agent, run in zip(shared, runs):
        alone = load_agent(run, device="cpu")
        expected = respond_batch(alone, items, 6)[0].token_ids
        assert respond_batch(agent, items, 6)[0].token_ids == expected
    assert respond_batch(shared[0], items, 6)[0].token_ids == respond_batch(load_agent(runs[0], device="cpu"), items, 6)[0].token_ids
