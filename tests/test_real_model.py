"""Slow tests on the embedded SmolLM2-135M (real weights): train, then generate as trained."""

import pytest
import torch

pytestmark = pytest.mark.slow


def test_embedded_prompt_tuning_generation_matches_training_forward(builtin_data, tmp_path):
    """On the real model PEFT's own prompt-tuning generate drifts from training; ours must not."""
    from supporttune.train.config import TrainConfig
    from supporttune.inference.decode import DecodeSettings
    from supporttune.inference.generate import generate_replies
    from supporttune.inference.agent import load_agent
    from supporttune.core.io import read_jsonl
    from supporttune.prompting.builder import encode_prompt
    from supporttune.train.stage import train

    cfg = TrainConfig(data=builtin_data, out=tmp_path / "pt", method="prompt-tuning", virtual_tokens=10, max_steps=2,
                      batch_size=4, grad_accum=1, max_val_samples=4, device="cpu")
    s = train(cfg)
    assert s["trainable_params"] == 10 * 576
    agent = load_agent(cfg.out, device="cpu")
    examples = read_jsonl(builtin_data / "test.jsonl")[:3]
    gens = generate_replies(agent, examples, DecodeSettings(max_new_tokens=8, batch_size=3), progress=None)
    for ex, g in zip(examples, gens):
        prompt = encode_prompt(agent.tokenizer, ex, agent.spec)
        ids = torch.tensor([prompt + g.token_ids])
        with torch.no_grad():
            logits = agent.model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0, -ids.shape[1]:]
        assert g.token_ids and g.token_ids == logits[len(prompt) - 1:-1].argmax(-1).tolist()[: len(g.token_ids)]


def test_embedded_qlora_loss_falls(builtin_data, tmp_path):
    from supporttune.train.config import TrainConfig
    from supporttune.train.stage import train

    s = train(TrainConfig(data=builtin_data, out=tmp_path / "q", method="qlora", r=8, alpha=32, max_steps=6, lr=2e-3,
                          batch_size=4, grad_accum=1, logging_steps=1, max_val_samples=4, device="cpu"))
    assert s["final_train_loss"] < s["first_train_loss"]
    assert (tmp_path / "q" / "adapter_model.safetensors").is_file()
