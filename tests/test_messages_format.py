"""Multi-turn `messages` JSONL (and ShareGPT) prepare into pairs with history; TWCS pairs keep theirs."""

import json
import re

import pytest

from supporttune.data.config import PrepareConfig
from supporttune.data.prepare import prepare
from supporttune.core.errors import UserError
from supporttune.core.io import read_jsonl


def _conversations(n: int) -> list[dict]:
    rows = []
    for i in range(n):
        rows.append({"id": f"c{i}", "brand": "ShopNest", "messages": [
            {"role": "system", "content": "You are ShopNest support."},
            {"role": "user", "content": f"Hi, my order {i} has not arrived yet, can you check?"},
            {"role": "assistant", "content": "Sorry to hear that! Could you send us the order number by DM?"},
            {"role": "user", "content": [{"type": "text", "text": f"Sent it, it is order number {i} from last week."}]},
            {"role": "assistant", "content": "Thanks, the parcel is on its way and arrives tomorrow."}]})
    rows.append({"id": "sg", "conversations": [{"from": "human", "value": "Can I change my delivery address please?"},
                                               {"from": "gpt", "value": "Yes, you can change it under My Orders."}]})
    return rows


def test_messages_jsonl_prepares_pairs_with_history(tmp_path):
    src = tmp_path / "conv.jsonl"
    src.write_text("\n".join(json.dumps(r) for r in _conversations(30)) + "\n")
    report = prepare(PrepareConfig(input=str(src), out=tmp_path / "d", val_frac=0.2, test_frac=0.2))
    assert report["format"] == "messages" and report["pairs_kept"] == 61
    rows = [r for s in ("train", "val", "test") for r in read_jsonl(tmp_path / "d" / f"{s}.jsonl")]
    second = [r for r in rows if r["output"].startswith("Thanks, the parcel")]
    assert len(second) == 30
    h = second[0]["history"]
    assert [t["role"] for t in h] == ["user", "assistant"] and "send us the order number" in h[1]["content"]
    assert all("system" not in json.dumps(t) for t in h)  # system turns are not customer text
    threads = {s: {r["thread_id"] for r in read_jsonl(tmp_path / "d" / f"{s}.jsonl")} for s in ("train", "val", "test")}
    assert not (threads["train"] & threads["test"]) and not (threads["train"] & threads["val"])
    assert any(r["input"].startswith("Can I change") and r["history"] == [] for r in rows)  # ShareGPT


def test_bad_role_is_one_clear_error(tmp_path):
    src = tmp_path / "bad.jsonl"
    src.write_text(json.dumps({"messages": [{"role": "robot", "content": "hi"}]}) + "\n")
    with pytest.raises(UserError, match=r"bad.jsonl:1: unknown role 'robot'"):
        prepare(PrepareConfig(input=str(src), out=tmp_path / "d"))


@pytest.mark.slow
def test_messages_file_trains_and_evaluates_with_history(tmp_path, tiny_model_dir):
    from supporttune.evaluate.config import EvalConfig
    from supporttune.train.config import TrainConfig
    from supporttune.evaluate.stage import evaluate
    from supporttune.train.stage import train

    src = tmp_path / "conv.jsonl"
    src.write_text("\n".join(json.dumps(r) for r in _conversations(30)) + "\n")
    prepare(PrepareConfig(input=str(src), out=tmp_path / "d", val_frac=0.2, test_frac=0.2))
    train(TrainConfig(model=str(tiny_model_dir), data=tmp_path / "d", out=tmp_path / "run", max_steps=2, batch_size=2,
                      grad_accum=1, device="cpu", r=4, alpha=8, lr=1e-3, history=2, retrieve=1))
    m = evaluate(EvalConfig(run=tmp_path / "run", data=tmp_path / "d", max_new_tokens=4, latency_samples=1,
                            semantic=False, perplexity=False, bootstrap=100))
    assert m["examples"] > 0 and m["prompt"]["history"] == 2 and m["prompt"]["retrieve"] == 1


@pytest.mark.slow
def test_twcs_pairs_keep_earlier_turns(twcs_path, tmp_path):
    prepare(PrepareConfig(input=str(twcs_path), format="twcs", out=tmp_path / "t"))
    rows = read_jsonl(tmp_path / "t" / "train.jsonl")
    with_history = [r for r in rows if r["history"]]
    assert 0.2 < len(with_history) / len(rows) < 0.9
    for r in with_history:
        assert all(t["role"] in ("user", "assistant") and t["content"] for t in r["history"])
        assert not any(re.search(r"(?<![\w@])@\w+", t["content"]) for t in r["history"])  # handles redacted
    text = json.dumps([r["history"] for r in rows])
    assert "http" not in text  # history is redacted like the pair
