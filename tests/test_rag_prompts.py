"""Retrieved examples and thread history: train, evaluate, chat and serve build the same prompt tokens."""

import json

import pytest

from supporttune import rundir
from supporttune.inference.agent import load_agent
from supporttune.data.split import load_split
from supporttune.prompting.spec import PromptSpec
from supporttune.prompting.builder import prompt_text


@pytest.fixture(scope="module")
def rag_run(tiny_model_dir, builtin_data, tmp_path_factory):
    """A tiny LoRA run with retrieve=2, history=3; records every example the Trainer was given."""
    import supporttune.train.stage as train_mod
    from supporttune.train.collate import EncodedDataset
    from supporttune.train.config import TrainConfig

    seen = {}

    class Recording(EncodedDataset):
        def __init__(self, rows, tokenizer, spec, max_length, index=None, distract_share=0.0, seed=0):
            super().__init__(rows, tokenizer, spec, max_length, index, distract_share, seed)
            from supporttune.prompting.retrieval import attach_exemplars

            for row in attach_exemplars(rows, index, spec.retrieve, distract_share, seed):
                seen[row["id"]] = row

    out = tmp_path_factory.mktemp("rag") / "run"
    mp = pytest.MonkeyPatch()
    mp.setattr(train_mod, "EncodedDataset", Recording)
    try:
        train_mod.train(TrainConfig(model=str(tiny_model_dir), data=builtin_data, out=out, method="lora", max_steps=2,
                                    batch_size=2, grad_accum=1, device="cpu", max_val_samples=6, r=4, alpha=8,
                                    lr=1e-3, retrieve=2, history=3, max_length=1024))
    finally:
        mp.undo()
    return out, seen


def test_record_keeps_the_whole_prompt_spec(rag_run):
    out, _ = rag_run
    record = rundir.read_record(out)
    assert record.spec.retrieve == 2 and record.spec.history == 3 and record.spec.retrieval == "bm25"
    assert (out / rundir.EXEMPLARS).is_file()


def test_training_examples_never_see_their_own_thread(rag_run, builtin_data):
    out, seen = rag_run
    train = {r["id"]: r for r in load_split(builtin_data, "train")}
    by_thread = {}
    for r in train.values():
        by_thread.setdefault(r["thread_id"], set()).add(r["output"])
    checked = 0
    for rid, row in seen.items():
        assert len(row["exemplars"]) == 2
        own = by_thread.get(row["thread_id"], set())
        assert not {e["output"] for e in row["exemplars"]} & own - {x["output"] for x in train.values()
                                                                     if x["thread_id"] != row["thread_id"]}
        checked += 1
    assert checked > 10
    index_rows = [json.loads(x) for x in (out / rundir.EXEMPLARS).read_text().splitlines()]
    assert {r["id"] for r in index_rows} == set(train)  # the index is the training split, nothing else


def test_inference_prompt_tokens_equal_training_prompt_tokens(rag_run, builtin_data):
    out, seen = rag_run
    agent = load_agent(out, device="cpu")
    val = load_split(builtin_data, "val")[:6]
    train = load_split(builtin_data, "train")[:20]
    from supporttune.prompting.builder import encode_prompt

    for ex in val + train:
        trained = encode_prompt(agent.tokenizer, seen[ex["id"]], agent.spec)
        assert agent.prompt_ids(ex) == trained
    text = prompt_text(agent.tokenizer, agent.prompts.with_context([val[0]])[0], agent.spec)
    assert "Replies this team gave to similar messages" in text


def test_history_is_rendered_as_chat_turns_and_cut_never_the_message(tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    long = "word " * 400
    ex = {"input": long, "output": "ok", "brand": "Acme",
          "history": [{"role": "user", "content": "first question"}, {"role": "assistant", "content": "first answer " * 100},
                      {"role": "user", "content": "second question"}]}
    text = prompt_text(tok, ex, PromptSpec(history=2, context_tokens=16))
    assert "first question" not in text  # only the last 2 turns
    assert "second question" in text and text.count("first answer") < 20  # the long turn was cut
    assert long.strip() in text  # the customer's own message is whole
    assert "<|im_start|>assistant\nfirst answer" in text  # an agent turn is an assistant turn


def test_serve_uses_earlier_messages_as_history(rag_run):
    from supporttune.serve.respond import live_example, prompt_length

    out, _ = rag_run
    agent = load_agent(out, device="cpu")
    turns = [{"role": "user", "content": "my order never came"}, {"role": "assistant", "content": "sorry, which order?"}]
    assert prompt_length(agent, "order 5", "Acme", turns) > prompt_length(agent, "order 5", "Acme")
    ex = live_example(agent, "order 5", "Acme", turns)
    assert "which order?" in prompt_text(agent.tokenizer, ex, agent.spec)
