"""Batched generation (left padding) gives what one-at-a-time generation gives, for every method family."""

import pytest

from supporttune.generate import DecodeSettings, generate_replies, load_agent, reference_perplexity
from supporttune.io import read_jsonl

RUNS = ["lora", "prompt-tuning-random"]  # one per method family (weights in layers / virtual tokens)


@pytest.mark.parametrize("name", RUNS)
def test_batched_equals_one_at_a_time(tiny_runs, builtin_data, name):
    cfg, _ = tiny_runs(name)
    agent = load_agent(cfg.out, device="cpu")
    examples = read_jsonl(builtin_data / "test.jsonl")[:6]
    batched = generate_replies(agent, examples, DecodeSettings(max_new_tokens=8, batch_size=6), progress=None)
    single = generate_replies(agent, examples, DecodeSettings(max_new_tokens=8, batch_size=1), progress=None)
    assert [g.new_tokens for g in batched] == [g.new_tokens for g in single]
    assert [g.text for g in batched] == [g.text for g in single]
    assert sum(g.new_tokens for g in batched) > len(batched)  # not a comparison of empty replies
    assert all(g.latency_s > 0 for g in batched)
    ppl = reference_perplexity(agent, examples)
    assert ppl is not None and 1 < ppl < 1e6


@pytest.mark.parametrize("name", RUNS)
def test_generation_is_greedy_decoding_of_the_training_forward(tiny_runs, builtin_data, name):
    """Every generated token is the argmax of the model *as trained* (PEFT's training forward) at its position.

    This catches a prompt-learning generate path that places or re-injects virtual tokens differently
    from training (PEFT 0.21's own generate did, with transformers 5).
    """
    import torch

    from supporttune.prompts import encode_prompt

    cfg, _ = tiny_runs(name)
    agent = load_agent(cfg.out, device="cpu")
    examples = read_jsonl(builtin_data / "test.jsonl")[:4]
    gens = generate_replies(agent, examples, DecodeSettings(max_new_tokens=6, batch_size=4), progress=None)
    for ex, g in zip(examples, gens):
        prompt = encode_prompt(agent.tokenizer, ex, agent.spec)
        new = g.token_ids
        assert new, "nothing generated: the check would be empty"
        ids = torch.tensor([prompt + new])
        with torch.no_grad():
            logits = agent.model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0, -ids.shape[1]:]
        expected = logits[len(prompt) - 1:-1].argmax(-1).tolist() if new else []
        assert new == expected[: len(new)]
