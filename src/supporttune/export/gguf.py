"""GGUF export of a merged Llama checkpoint, so llama.cpp and Ollama can run a fine-tuned model (issue 25).

It does what llama.cpp's ``convert_hf_to_gguf.py`` does for ``LlamaForCausalLM`` with a gpt2-style
byte-level BPE tokenizer, using only the ``gguf`` package (no llama.cpp checkout): the same tensor
names (gguf's own name map), the same q/k row permutation, the same hyper-parameter keys, token
list, token types and merges, and the same rule for which tensors stay F32 (1-D and norms).
``compare_logits`` loads the file back with transformers (which undoes the permutation) and measures
how far its logits are from the HF checkpoint's.

Types: f32, f16, q8_0 (as convert_hf_to_gguf writes them) and q4_0. q4_0 is offered because
``gguf.quants.quantize`` implements it in gguf 0.19 (Q4_K there only dequantizes); like
``llama-quantize``'s mixes it keeps ``token_embd``/``output`` at higher precision (Q8_0 here).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

import gguf
import numpy as np
import torch

from ..core.errors import UserError

GgufDtype = Literal["f16", "q8_0", "f32", "q4_0"]
QTYPES = {"f32": gguf.GGMLQuantizationType.F32, "f16": gguf.GGMLQuantizationType.F16,
          "q8_0": gguf.GGMLQuantizationType.Q8_0, "q4_0": gguf.GGMLQuantizationType.Q4_0}
FILE_TYPES = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
              "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0, "q4_0": gguf.LlamaFileType.MOSTLY_Q4_0}
# The embeddings and the output head are the most sensitive to rounding: llama-quantize's 4-bit mixes keep them higher.
KEEP_HIGHER = ("token_embd.weight", "output.weight")


def read_config(model_dir: Path) -> dict:
    """config.json of a Llama checkpoint; anything else is refused in one line."""
    path = model_dir / "config.json"
    if not path.is_file():
        raise UserError(f"{model_dir}: no config.json (expected a merged checkpoint written by save_pretrained)")
    cfg = json.loads(path.read_text(encoding="utf-8"))
    archs = cfg.get("architectures") or []
    if cfg.get("model_type") != "llama" or archs not in ([], ["LlamaForCausalLM"]):
        raise UserError(f"{model_dir}: GGUF export supports Llama checkpoints only, got model_type="
                        f"{cfg.get('model_type')!r} architectures={archs}")
    if cfg.get("attention_bias") or cfg.get("mlp_bias"):
        raise UserError(f"{model_dir}: Llama with attention/MLP biases is not supported by the GGUF export")
    return cfg


def rope_settings(cfg: dict) -> tuple[float, str, dict]:
    """(theta, rope type, parameters) from transformers 5's ``rope_parameters`` or the older top-level keys."""
    rope = cfg.get("rope_parameters") or cfg.get("rope_scaling") or {}
    theta = float(rope.get("rope_theta", cfg.get("rope_theta", 10000.0)))
    kind = rope.get("rope_type") or rope.get("type") or "default"
    if kind not in ("default", "linear"):
        # llama3 / yarn scaling need extra tensors or keys (convert_hf_to_gguf's rope_freqs); not written here.
        raise UserError(f"GGUF export: rope scaling {kind!r} is not supported (only default and linear)")
    return theta, kind, rope


def permute(w: np.ndarray, n_head: int, n_head_kv: int | None) -> np.ndarray:
    """llama.cpp's ``LlamaModel.permute`` for q/k rows: HF's rotate-half layout -> GGML's interleaved pairs."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2)
            .reshape(w.shape))


def _checkpoint_tensors(model_dir: Path) -> dict[str, torch.Tensor]:
    from safetensors import safe_open

    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise UserError(f"{model_dir}: no *.safetensors weights (save the merged model with save_pretrained)")
    out: dict[str, torch.Tensor] = {}
    for file in files:
        with safe_open(file, framework="pt") as f:
            for key in f.keys():  # noqa: SIM118 (a safetensors handle, not a dict: it has no __iter__)
                out[key] = f.get_tensor(key)
    return out


def _qtype(name: str, arr: np.ndarray, dtype: GgufDtype) -> gguf.GGMLQuantizationType:
    """convert_hf_to_gguf's rule: 1-D tensors and norms stay F32; a row length the block size does not divide
    falls back to F16."""
    if arr.ndim <= 1 or name.endswith("_norm.weight"):
        return gguf.GGMLQuantizationType.F32
    qtype = QTYPES[dtype]
    if dtype == "q4_0" and name in KEEP_HIGHER:
        qtype = gguf.GGMLQuantizationType.Q8_0
    block = gguf.GGML_QUANT_SIZES[qtype][0]
    if arr.shape[-1] % block:
        return gguf.GGMLQuantizationType.F16
    return qtype


def _add_tensors(writer: gguf.GGUFWriter, model_dir: Path, cfg: dict, dtype: GgufDtype) -> dict[str, str]:
    n_layers = cfg["num_hidden_layers"]
    n_head = cfg["num_attention_heads"]
    n_kv = cfg.get("num_key_value_heads", n_head)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, n_layers)
    tied = bool(cfg.get("tie_word_embeddings", False))
    written: dict[str, str] = {}
    for hf_name, tensor in _checkpoint_tensors(model_dir).items():
        if hf_name.endswith(".rotary_emb.inv_freq") or (tied and hf_name == "lm_head.weight"):
            continue  # recomputed by llama.cpp / the same matrix as token_embd
        name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise UserError(f"{model_dir}: tensor {hf_name!r} has no llama.cpp name (not a plain Llama checkpoint?)")
        arr = tensor.float().numpy()
        if hf_name.endswith("q_proj.weight"):
            arr = permute(arr, n_head, n_head)
        elif hf_name.endswith("k_proj.weight"):
            arr = permute(arr, n_head, n_kv)
        qtype = _qtype(name, arr, dtype)
        writer.add_tensor(name, gguf.quants.quantize(arr, qtype), raw_dtype=qtype)
        written[name] = qtype.name
    if not tied and "output.weight" not in written:
        raise UserError(f"{model_dir}: tie_word_embeddings is false but there is no lm_head.weight")
    return written


def _add_hparams(writer: gguf.GGUFWriter, cfg: dict, dtype: GgufDtype, name: str) -> None:
    n_head = cfg["num_attention_heads"]
    head_dim = cfg.get("head_dim") or cfg["hidden_size"] // n_head
    theta, rope_kind, rope = rope_settings(cfg)
    writer.add_name(name)
    writer.add_context_length(cfg["max_position_embeddings"])
    writer.add_embedding_length(cfg["hidden_size"])
    writer.add_block_count(cfg["num_hidden_layers"])
    writer.add_feed_forward_length(cfg["intermediate_size"])
    writer.add_head_count(n_head)
    writer.add_head_count_kv(cfg.get("num_key_value_heads", n_head))
    writer.add_rope_freq_base(theta)
    writer.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    writer.add_vocab_size(cfg["vocab_size"])
    writer.add_rope_dimension_count(head_dim)
    if head_dim != cfg["hidden_size"] // n_head:
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
    if rope_kind == "linear":
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(float(rope["factor"]))
    writer.add_file_type(FILE_TYPES[dtype])
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)


def _looks_special(token: str) -> bool:
    """convert_hf_to_gguf's ``does_token_look_special``: added tokens that ought to be control tokens."""
    return (token in ("<pad>", "<mask>", "<2mass>", "[@BOS@]") or (token.startswith("<|") and token.endswith("|>"))
            or (token.startswith("<｜") and token.endswith("｜>")) or (token.startswith("<unused") and token.endswith(">")))


def pre_tokenizer_name(tokenizer_json: dict) -> str:
    """llama.cpp's ``tokenizer.ggml.pre`` from the pre-tokenizer's structure (llama.cpp itself hashes the
    tokenization of a probe text against a table of known models, which lives only in its repository).
    Plain byte-level regex -> 'gpt2'; digits split one by one, then byte-level -> 'smollm'; else 'default'."""
    pre = tokenizer_json.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    kinds = [(s.get("type"), s.get("individual_digits"), s.get("use_regex")) for s in steps]
    if kinds == [("ByteLevel", None, True)]:
        return "gpt2"
    if kinds == [("Digits", True, None), ("ByteLevel", None, True)]:
        return "smollm"
    return "default"


def _add_vocab(writer: gguf.GGUFWriter, model_dir: Path, vocab_size: int, chat_template: str | None) -> str:
    """Token list, types, merges and special ids as convert_hf_to_gguf's ``_set_vocab_gpt2``; returns the pre name."""
    path = model_dir / "tokenizer.json"
    if not path.is_file():
        raise UserError(f"{model_dir}: no tokenizer.json (GGUF export needs the fast tokenizer saved with the model)")
    doc = json.loads(path.read_text(encoding="utf-8"))
    model = doc.get("model", {})
    if model.get("type") != "BPE" or model.get("byte_fallback") or (doc.get("decoder") or {}).get("type") != "ByteLevel":
        raise UserError(f"{model_dir}: GGUF export supports gpt2-style byte-level BPE tokenizers only; this one "
                        f"({model.get('type')}, byte_fallback={model.get('byte_fallback', False)}) is sentencepiece-style")
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    vocab = tok.get_vocab()
    if max(vocab.values()) >= vocab_size:
        raise UserError(f"{model_dir}: tokenizer has ids up to {max(vocab.values())} but config vocab_size is {vocab_size}")
    reverse = {i: t for t, i in vocab.items()}
    added = tok.get_added_vocab()
    decoder = tok.added_tokens_decoder
    tokens: list[str] = []
    types: list[int] = []
    for i in range(vocab_size):
        if i not in reverse:  # the embedding matrix is larger than the vocabulary
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
            continue
        token = reverse[i]
        if token in added:
            # llama.cpp expects CONTROL/USER_DEFINED tokens pre-normalized.
            if not decoder[i].normalized:
                token = tok.decode(tok.encode(token, add_special_tokens=False))
            special = decoder[i].special or _looks_special(token)
            types.append(gguf.TokenType.CONTROL if special else gguf.TokenType.USER_DEFINED)
        else:
            types.append(gguf.TokenType.NORMAL)
        tokens.append(token)
    pre = pre_tokenizer_name(doc)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    special = gguf.SpecialVocab(model_dir, load_merges=True, n_vocab=len(tokens))
    if chat_template is not None:
        special.chat_template = chat_template
    # Written explicitly so llama.cpp starts prompts as the HF tokenizer does (its default depends on the pre type).
    bos = tok.bos_token_id
    special.add_special_token.setdefault("bos", bos is not None and tok("a")["input_ids"][:1] == [bos])
    special.add_to_gguf(writer, quiet=True)
    return pre


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_gguf(model_dir: Path, out_file: Path, dtype: GgufDtype = "f16", chat_template: str | None = None) -> dict:
    """Write ``out_file`` from the merged HF Llama checkpoint in ``model_dir``; return a summary
    (tensors: name -> GGML type, bytes, dtype, sha256, pre-tokenizer name). ``chat_template`` replaces the
    tokenizer's own (tokenizer_config.json / chat_template.jinja), which is written otherwise."""
    model_dir, out_file = Path(model_dir), Path(out_file)
    if dtype not in QTYPES:
        raise UserError(f"GGUF dtype {dtype!r}: choose one of {', '.join(QTYPES)}")
    cfg = read_config(model_dir)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(out_file, gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA])
    _add_hparams(writer, cfg, dtype, name=model_dir.name)
    pre = _add_vocab(writer, model_dir, cfg["vocab_size"], chat_template)
    tensors = _add_tensors(writer, model_dir, cfg, dtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return {"file": str(out_file), "dtype": dtype, "tensors": tensors, "n_tensors": len(tensors),
            "bytes": out_file.stat().st_size, "sha256": _sha256(out_file), "tokenizer_pre": pre}


def compare_logits(model_dir: Path, gguf_file: Path, prompts: list[list[int]]) -> dict:
    """Next-token logits (every position of every prompt) of the HF checkpoint vs the GGUF loaded back by
    transformers (fp32, q/k de-permuted on load): max / mean absolute difference and argmax agreement."""
    from transformers import AutoModelForCausalLM

    gguf_file = Path(gguf_file)
    hf = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    back = AutoModelForCausalLM.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name, dtype=torch.float32).eval()
    diffs, agree, total = [], 0, 0
    with torch.no_grad():
        for ids in prompts:
            x = torch.tensor([ids])
            a, b = hf(x).logits[0], back(x).logits[0]
            diffs.append((a - b).abs().flatten())
            agree += int((a.argmax(-1) == b.argmax(-1)).sum())
            total += len(ids)
    d = torch.cat(diffs)
    return {"positions": total, "max_abs_diff": float(d.max()), "mean_abs_diff": float(d.mean()),
            "argmax_agreement": agree / max(total, 1)}
