"""Batched generation (left padding) gives what one-at-a-time generation gives, for every method family."""

import pytest

from supporttune.inference.decode import DecodeSettings
from supporttune.inference.generate import generate_replies, reference_perplexity
from supporttune.inference.agent import load_agent
from supporttune.core.io import read_jsonl

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

    from supporttune.prompting.builder import encode_prompt

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


def test_shards_are_whole_batches_of_the_unsharded_call(tiny_run, builtin_data):
    """`evaluate --nproc N` deals whole batches to the ranks: each batch is padded as one process pads it,
    so in bf16 on a GPU the replies cannot depend on N (sharding examples would change the batches)."""
    agent = load_agent(tiny_run, device="cpu")
    examples = read_jsonl(builtin_data / "test.jsonl")[:7]
    settings = DecodeSettings(max_new_tokens=4, batch_size=2)
    full = generate_replies(agent, examples, settings, progress=None)
    parts = [generate_replies(agent, examples, settings, progress=None, shard=(r, 2)) for r in range(2)]
    mine = [{i for i, g in enumerate(p) if g is not None} for p in parts]
    assert mine[0].isdisjoint(mine[1]) and mine[0] | mine[1] == set(range(7)) and len(mine[0]) == 4  # batches 0 and 2 of 4
    assert all((p[i] or full[i]).text == full[i].text for p in parts for i in range(7))


STATIC_METHODS = ["lora", "dora", "ia3", "prompt-tuning-random"]  # shared runs (conftest.TINY_RUNS)


@pytest.mark.parametrize("name", STATIC_METHODS)
def test_static_cache_engine_gives_the_eager_tokens(tiny_runs, builtin_data, name):
    """The fast path (plain model, adapter merged or NF4 dequantized, static cache, padded rows) = eager greedy."""
    from supporttune.inference.engine import engine_for

    cfg, _ = tiny_runs(name)
    agent = load_agent(cfg.out, device="cpu")
    examples = read_jsonl(builtin_data / "test.jsonl")[:7]
    eager = generate_replies(agent, examples, DecodeSettings(max_new_tokens=10, batch_size=4, engine="eager"), progress=None)
    static = generate_replies(agent, examples, DecodeSettings(max_new_tokens=10, batch_size=4, engine="static"), progress=None)
    report = engine_for(agent).report()
    assert report["calls"] == {"eager": 2, "static": 2} and report["model"] != "the agent's own model"
    assert [g.token_ids for g in static] == [g.token_ids for g in eager]
    assert all(g.latency_s > 0 for g in static)


def test_qlora_plain_copy_is_the_4bit_model_up_to_bf16_rounding(tiny_runs, builtin_data):
    """QLoRA's fast path: NF4 weights dequantized as bitsandbytes does, adapter merged; not the original base.

    bitsandbytes multiplies in bf16 on this CPU and the plain copy in fp32, so the logits agree to
    bf16 rounding (the random tiny model's near-flat logits make its greedy tokens a poor check).
    """
    import torch

    from supporttune.inference import slots
    from supporttune.inference.engine import engine_for

    cfg, _ = tiny_runs("qlora")
    agent = load_agent(cfg.out, device="cpu")
    assert slots.fast_kind(agent.model) == "dequantized"
    slot, _ = slots.slot_for(agent.model, "dequantized", engine_for(agent))
    ids = torch.tensor([agent.prompt_ids(read_jsonl(builtin_data / "test.jsonl")[0])])
    with torch.no_grad():
        four_bit, plain = agent.model(input_ids=ids).logits, slot.model(input_ids=ids).logits
        with agent.model.disable_adapter():
            base_only = agent.model(input_ids=ids).logits
    scale = four_bit.abs().max()
    assert (four_bit - plain).abs().max() < 1e-2 * scale  # same function...
    assert (four_bit - base_only).abs().max() > 10 * (four_bit - plain).abs().max()  # ...with the adapter in it
    examples = read_jsonl(builtin_data / "test.jsonl")[:3]
    gens = generate_replies(agent, examples, DecodeSettings(max_new_tokens=6, batch_size=4, engine="static"), progress=None)
    assert len(gens) == 3 and all(g.new_tokens <= 6 for g in gens)
