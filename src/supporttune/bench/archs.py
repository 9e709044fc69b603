"""Random-weight models of named architectures, for benchmarks.

Speed does not depend on weight values, so the bench measures random weights of a real
architecture: no download, the same initial weights for every path and method. Two kinds:

* ``random_checkpoint(arch)``: exactly the architecture, its vocabulary too; the bench folds the
  tokenizer's ids into it (bench/data.py ``FoldedTokenizer``).
* ``random_checkpoint(arch, tokenizer=tok)``: the vocabulary widened to fit ``tok``, its special
  tokens, and the tokenizer saved alongside, so that a real ``supporttune train --nproc N`` runs on
  it unchanged (bench --scaling).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

# torch is imported where used: configs read ARCHS while validating, in milliseconds
TINYLLAMA = dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32,
                 num_key_value_heads=4, vocab_size=32000, max_position_embeddings=2048, rms_norm_eps=1e-5,
                 tie_word_embeddings=False)
SMOLLM2 = dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
               num_key_value_heads=3, vocab_size=49152, max_position_embeddings=8192, rms_norm_eps=1e-5,
               tie_word_embeddings=True, rope_theta=100000.0)
TINY = dict(hidden_size=128, intermediate_size=384, num_hidden_layers=4, num_attention_heads=4,
            num_key_value_heads=2, vocab_size=8192, max_position_embeddings=1024, tie_word_embeddings=True)
ARCHS = {"tinyllama-arch": TINYLLAMA, "smollm2-arch": SMOLLM2, "tiny-arch": TINY}
CONFIG_KEYS = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
               "vocab_size", "max_position_embeddings", "rms_norm_eps", "tie_word_embeddings")

_MADE: dict[str, Path] = {}  # one checkpoint per (architecture, tokenizer, device, dtype, seed) per process


def arch_of(model: str) -> dict:
    """A named architecture, or the shape of a model preset/path's config (its weights are not read)."""
    if model in ARCHS:
        return ARCHS[model]
    from ..models.loading import load_config, resolve

    return {k: v for k, v in load_config(resolve(model)).to_dict().items() if k in CONFIG_KEYS}


def random_checkpoint(arch: dict, *, device: str = "cpu", dtype: torch.dtype | None = None, seed: int = 0,
                      tokenizer=None, out: Path | None = None) -> Path:
    """Random weights of ``arch`` saved as a HF checkpoint directory (``out``, or a temporary one, made once).

    Initialised on ``device`` (a 1.1B model inits in seconds on a GPU) in ``dtype`` (default: bf16
    on a GPU, fp32 on CPU). With ``tokenizer``: vocabulary widened to fit it, its special tokens,
    and the tokenizer saved alongside.
    """
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    dtype = dtype or (torch.bfloat16 if device == "cuda" else torch.float32)
    key = json.dumps([arch, tokenizer.name_or_path if tokenizer else None, device, str(dtype), seed, str(out)], sort_keys=True)
    if key in _MADE:
        return _MADE[key]
    if tokenizer is None:
        ids = dict(pad_token_id=0, bos_token_id=1, eos_token_id=2)
    else:
        arch = {**arch, "vocab_size": max(arch["vocab_size"], len(tokenizer))}
        ids = dict(pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(seed)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(LlamaConfig(**arch, **ids), dtype=dtype)
    path = Path(out) if out is not None else Path(tempfile.mkdtemp(prefix="supporttune-bench-"))
    model.save_pretrained(path)
    if tokenizer is not None:
        tokenizer.save_pretrained(path)
    del model
    from ..core.memory import free_memory

    free_memory()
    _MADE[key] = path
    return path


def load_random(path: Path, *, device: str, dtype: torch.dtype, quantize_4bit: bool = False):
    """The production loader on a random checkpoint. A 4-bit base computes in fp16 on the seed path
    (its recipe), in bf16 otherwise."""
    import torch

    from ..models.loading import ModelRef, load_model

    return load_model(ModelRef("random", "local", str(path)), dtype=dtype, device=device, quantize_4bit=quantize_4bit,
                      compute_dtype=torch.float16 if dtype == torch.float16 else torch.bfloat16)
