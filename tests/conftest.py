"""Shared fixtures: paths to the real shared data, and tiny models for fast tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
SHARED_TWCS = REPO.parent / "shared" / "data" / "twcs_sample.csv"


@pytest.fixture(scope="session")
def twcs_path() -> Path:
    if not SHARED_TWCS.is_file():
        pytest.skip(f"shared TWCS sample not found at {SHARED_TWCS}")
    return SHARED_TWCS


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A 2-layer, 64-wide random Llama with the embedded model's real tokenizer and chat template."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig

    from supporttune.models import gguf_location

    gguf = gguf_location()
    out = tmp_path_factory.mktemp("tiny-llama")
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         tie_word_embeddings=True, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                         bos_token_id=tok.bos_token_id)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def builtin_data(tmp_path_factory) -> Path:
    from supporttune.config import PrepareConfig
    from supporttune.data.prepare import prepare

    out = tmp_path_factory.mktemp("data") / "builtin"
    prepare(PrepareConfig(input="builtin", out=out, builtin_threads=80))
    return out


@pytest.fixture()
def tiny_train_cfg(tiny_model_dir, builtin_data, tmp_path):
    """A factory of fast train configs on the tiny model."""
    from supporttune.config import TrainConfig

    def make(**overrides):
        base = dict(model=str(tiny_model_dir), data=builtin_data, out=tmp_path / "run", method="lora", max_steps=6,
                    batch_size=2, grad_accum=1, save_steps=3, logging_steps=1, device="cpu", max_val_samples=8,
                    lr=1e-3, r=4, alpha=8)
        return TrainConfig(**{**base, **overrides})

    return make


@pytest.fixture(scope="session")
def tiny_run(tiny_model_dir, builtin_data, tmp_path_factory) -> Path:
    """A finished LoRA run on the tiny model (shared by chat/serve/export tests)."""
    from supporttune.config import TrainConfig
    from supporttune.train import train

    out = tmp_path_factory.mktemp("runs") / "lora"
    train(TrainConfig(model=str(tiny_model_dir), data=builtin_data, out=out, method="lora", max_steps=2, batch_size=2,
                      grad_accum=1, device="cpu", max_val_samples=4, r=4, alpha=8, lr=1e-2))
    return out
