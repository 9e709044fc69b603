"""Served feedback -> a preference file -> `train --objective` (issue 25: "feedback is stored and exported").

The parent is a tiny LoRA run with retrieval and history in its prompt, so "the pair's prompt is the
prompt the agent saw" is tested where it is hardest (exemplars, earlier turns, tags, a client's system
message). One test goes through the real server: chat, thumbs, the CLI export, two DPO steps.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from supporttune.core.errors import UserError
from supporttune.core.io import write_jsonl
from supporttune.pairs.config import PairsConfig

from conftest import TINY_TRAIN, run_cli

CHILD = dict(max_steps=2, save_steps=100, logging_steps=1, batch_size=2, grad_accum=1, device="cpu")
HISTORY = [{"role": "user", "content": "I ordered a lamp last week."}, {"role": "assistant", "content": "Thanks, noted."}]


@pytest.fixture(scope="module")
def parent(tiny_model_dir, builtin_data, tmp_path_factory) -> Path:
    from supporttune.train.config import TrainConfig
    from supporttune.train.stage import train

    out = tmp_path_factory.mktemp("fbx") / "parent"
    train(TrainConfig(**{**TINY_TRAIN, "max_steps": 2, "save_steps": 100}, model=str(tiny_model_dir),
                      data=builtin_data, out=out, retrieve=2, history=3, max_length=1024))
    return out


def _rec(i: int, run, rating: str, correction: str | None = None, model: str = "lora", **kw) -> dict:
    return {"id": f"chatcmpl-{i}", "time": "2026-01-01T00:00:00+00:00", "model": model,
            "run": str(Path(run).resolve()) if run else None, "rating": rating, "correction": correction,
            "comment": None, "message": kw.get("message", f"Where is my order {i}?!"), "history": kw.get("history", []),
            "brand": kw.get("brand"), "instructions": kw.get("instructions"), "reply": kw.get("reply", f"reply {i}")}


@pytest.fixture()
def store(parent, tmp_path) -> Path:
    rows = [_rec(1, parent, "down", "Your order left today; tracking follows.", history=HISTORY, brand="LampCo",
                 instructions="Answer in one sentence."),
            _rec(2, parent, "up"), _rec(3, parent, "down"),
            _rec(4, "/elsewhere/other-run", "up", model="b"), _rec(5, None, "down", "x", model="c")]
    write_jsonl(tmp_path / "feedback.jsonl", rows)
    return tmp_path / "feedback.jsonl"


def test_a_correction_is_a_pair_with_the_prompt_the_agent_saw(parent, store, builtin_data, tmp_path):
    from supporttune.inference.agent import load_agent
    from supporttune.pairs.feedback import export_feedback
    from supporttune.prompting.builder import encode_reply
    from supporttune.serve.respond import prompt_for
    from supporttune.train.prefdata import encode, read_preferences, split_counts

    out = tmp_path / "pairs.jsonl"
    counts = export_feedback(PairsConfig(run=parent, feedback=store, out=out))
    assert (counts["rows"], counts["used"], counts["without_correction"]) == (1, 1, 2)
    assert counts["skipped_other_agents"] == {"b": 1, "c": 1}
    assert counts["thumbs"]["lora"] == {"up": 1, "down": 2, "up_share": 0.3333}
    [row] = [json.loads(x) for x in out.read_text().splitlines()]
    assert row["chosen"] == [{"role": "assistant", "content": "Your order left today; tracking follows."}]
    assert row["rejected"] == [{"role": "assistant", "content": "reply 1"}] and "id" not in row
    agent = load_agent(parent, device="cpu")
    rows = read_preferences(out, "dpo", agent.spec, builtin_data)  # `train --preferences` reads it unchanged
    enc = encode(rows, agent.prompts, "dpo", 1024)
    expected = prompt_for(agent, "Where is my order 1?!", "LampCo", HISTORY, "Answer in one sentence.")
    assert enc.items[0]["prompt_ids"] == expected and enc.rebuilt == 0  # serve's prompt, token for token
    assert enc.items[0]["chosen_ids"] == encode_reply(agent.tokenizer, "Your order left today; tracking follows.",
                                                      agent.spec)
    text = agent.tokenizer.decode(expected)
    assert "I ordered a lamp last week." in text and "LampCo" in text and "Answer in one sentence." in text
    assert "Replies this team gave to similar messages" in text
    assert split_counts(rows) == {"train": 0, "val": 0, "test": 0, "live": 1}


def test_thumbs_are_kto_labels(parent, store, tmp_path):
    from supporttune.pairs.feedback import export_feedback

    out = tmp_path / "kto.jsonl"
    counts = export_feedback(PairsConfig(run=parent, feedback=store, out=out, shape="kto"))
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    got = [(r["feedback_id"], r["completion"][0]["content"], r["label"]) for r in rows]
    assert got == [("chatcmpl-1", "Your order left today; tracking follows.", True), ("chatcmpl-1", "reply 1", False),
                   ("chatcmpl-2", "reply 2", True), ("chatcmpl-3", "reply 3", False)]
    assert counts["rows"] == 4 and counts["without_correction"] == 0


def test_a_response_rated_twice_counts_once(parent, tmp_path):
    from supporttune.pairs.feedback import select

    path = tmp_path / "f.jsonl"
    write_jsonl(path, [_rec(1, parent, "up"), _rec(1, parent, "down", "better")])
    records, counts = select(path, parent)
    assert [(r["rating"], r["correction"]) for r in records] == [("down", "better")] and counts["records"] == 1


def test_feedback_model_picks_records_by_served_name(parent, tmp_path):
    from supporttune.pairs.feedback import select

    path = tmp_path / "f.jsonl"  # a store written on another machine: its run paths are not ours
    write_jsonl(path, [_rec(1, "/srv/runs/lora", "up", model="lora"), _rec(2, "/srv/runs/b", "down", model="b")])
    with pytest.raises(UserError, match="--feedback-model"):
        select(path, parent)
    records, counts = select(path, parent, model="lora")
    assert [r["id"] for r in records] == ["chatcmpl-1"] and counts["skipped_other_agents"] == {"b": 1}
    with pytest.raises(UserError, match="no feedback about model 'c'"):
        select(path, parent, model="c")
    with pytest.raises(ValidationError, match="--feedback-model go with --feedback"):
        PairsConfig(run=parent, out=tmp_path / "p.jsonl", feedback_model="lora")


@pytest.mark.parametrize("lines,needle", [
    (["{\"id\": 1"], ":1: not valid JSON"),
    (["", "[1]"], ":2: not a JSON object"),
    ([{"id": "x", "model": "a", "rating": "up", "message": "hi"}], ":1: feedback record without 'reply'"),
    ([{"id": "x", "model": "a", "rating": "meh", "message": "hi", "reply": "r"}], ":1: rating 'meh'"),
    ([{"id": "x", "model": "a", "rating": "up", "message": "hi", "reply": "r", "history": "no"}], "'history' must"),
    ([], "no feedback records"),
    ([_rec(1, "/elsewhere/x", "up", model="b")], r"no feedback about .* \(the records are about: b \(1\)\)"),
])
def test_bad_stores_fail_in_one_line_naming_file_and_line(lines, needle, tmp_path):
    from supporttune.pairs.feedback import select

    path = tmp_path / "f.jsonl"
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    with pytest.raises(UserError, match=needle) as e:
        select(path, tmp_path / "run")
    assert str(e.value).startswith(str(path)) and "\n" not in str(e.value)
    with pytest.raises(UserError, match="file not found"):
        select(tmp_path / "missing.jsonl", tmp_path / "run")


def test_config_rules_and_cli_errors(parent, store, tmp_path):
    with pytest.raises(ValidationError, match="--samples is an option of automatic pairs"):
        PairsConfig(run=parent, out=tmp_path / "x.jsonl", feedback=store, samples=2)
    with pytest.raises(ValidationError, match="--shape and --feedback-model go with --feedback"):
        PairsConfig(run=parent, out=tmp_path / "x.jsonl", shape="kto")
    res = run_cli("preferences", "--run", parent, "--out", tmp_path / "x.jsonl", "--feedback", tmp_path / "nope.jsonl")
    assert res.returncode == 2 and "nope.jsonl: file not found" in res.stderr and "Traceback" not in res.stderr
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(_rec(1, parent, "up")) + "\n{oops\n")
    res = run_cli("preferences", "--run", parent, "--out", tmp_path / "x.jsonl", "--feedback", bad)
    assert res.returncode == 2 and f"{bad}:2: not valid JSON" in res.stderr
    assert not (tmp_path / "x.jsonl").exists()


@pytest.fixture(scope="module")
def served(parent, tmp_path_factory) -> tuple:
    """The real server: two answers, thumbs down + corrections, then `preferences --feedback` on RUN's store."""
    import httpx

    from supporttune.inference.agent import load_agent
    from supporttune.rundir import feedback_path
    from supporttune.serve.config import ServeOptions
    from supporttune.serve.loadtest import LocalServer
    from supporttune.serve.server import create_app

    from scripted import make_scripted

    agent = load_agent(parent, device="cpu")
    make_scripted(agent, "We are on it.")
    agent.run_dir = parent
    store = feedback_path(parent)  # serve without --feedback: the answering run's folder
    with LocalServer(create_app([agent], ServeOptions(max_new_tokens=8, batcher="window"))) as url:
        ids = []
        for msg in ("My lamp arrived broken!", "Can I change my address?"):
            body = {"messages": [{"role": "system", "content": "Be brief."}, *HISTORY, {"role": "user", "content": msg}]}
            ids.append(httpx.post(f"{url}/v1/chat/completions", json=body, timeout=60).json()["id"])
        for rid, correction in zip(ids, ("Sorry! A new lamp ships today.", "Yes: send us the new address.")):
            assert httpx.post(f"{url}/v1/feedback", json={"id": rid, "rating": "down", "correction": correction},
                              timeout=30).json()["stored"] is True
    out = tmp_path_factory.mktemp("served") / "fb.jsonl"
    res = run_cli("preferences", "--run", parent, "--feedback", store, "--out", out)
    store.unlink()  # the parent is shared by this module's other tests
    return res, [json.loads(x) for x in out.read_text().splitlines()] if out.exists() else [], out


def test_served_feedback_is_exported(served):
    res, rows, _ = served
    assert res.returncode == 0, res.stderr
    assert "wrote 2 preference pairs (corrections) from 2 of 2 feedback records" in res.stdout
    assert "thumbs up in" in res.stdout and "lora 0/2 (0%)" in res.stdout
    first = rows[0]["example"]
    assert first["instructions"] == "Be brief." and first["history"] == HISTORY and first["input"] == "My lamp arrived broken!"
    assert rows[0]["rejected"][0]["content"] == "We are on it." and rows[1]["chosen"][0]["content"].startswith("Yes:")


@pytest.mark.slow
def test_dpo_trains_on_exported_feedback(parent, served, tmp_path):
    from supporttune.train.config import TrainConfig
    from supporttune.train.stage import train

    summary = train(TrainConfig(objective="dpo", from_run=parent, preferences=served[2], out=tmp_path / "dpo", **CHILD))
    assert summary["steps"] == 2 and summary["preference_splits"]["live"] == 2 and summary["prompts_rebuilt"] == 0
    assert summary["first_train_loss"] == pytest.approx(0.6931, abs=1e-3)  # reference == policy at step 0
