"""A 2-layer, 32-wide random Llama and four prompt+reply items of unequal lengths, built from a config
(no tokenizer, no files): shared by the training-batch tests (packing, logits at labelled positions)."""

from __future__ import annotations

import torch

VOCAB, PAD = 97, 0
LENGTHS = [(5, 9), (2, 4), (9, 16), (3, 7)]  # (prompt, prompt + reply) tokens: unequal, so padding matters


def tiny_llama(attn: str = "sdpa", use_cache: bool = False):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                         pad_token_id=PAD, use_cache=use_cache, attn_implementation=attn)
    torch.manual_seed(0)
    return LlamaForCausalLM(config).float()


def tiny_items() -> list[dict]:
    g = torch.Generator().manual_seed(1)
    items = []
    for prompt, total in LENGTHS:
        ids = torch.randint(1, VOCAB, (total,), generator=g).tolist()
        items.append({"input_ids": ids, "labels": [-100] * prompt + ids[prompt:]})
    return items
