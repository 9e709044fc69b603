"""GGUF export (export/gguf.py) and the Ollama Modelfile (export/modelfile.py) on the tiny random Llama.

The GGUF is read back two ways: gguf.GGUFReader for names, types and metadata, and transformers
(``from_pretrained(gguf_file=...)``, which undoes llama.cpp's q/k permutation) for logits against the
HF checkpoint. Tiny random Llama (2 layers, 64 wide) and a tiny byte-level BPE built here. Measured
on these prompts (61 positions; /tmp script calling the helpers below): f32 max |diff| 0.0, f16 2.9e-4
(mean 4.8e-5), q8_0 6.9e-3 (mean 1.3e-3), q4_0 0.092 (mean 1.3e-2); the bounds below leave ~5x room.
The slow test checks the export against a file llama.cpp itself wrote: the embedded SmolLM2 GGUF.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import gguf
import numpy as np
import pytest

from supporttune.core.errors import UserError
from supporttune.export.gguf import compare_logits, permute, write_gguf
from supporttune.export.modelfile import chatml_template, write_modelfile

TEMPLATE = "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
CHATML = TEMPLATE + "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
# (max |logit diff|, mean |logit diff|) bounds per type, about 5x what was measured (module docstring).
BOUNDS = {"f32": (1e-6, 1e-7), "f16": (2e-3, 3e-4), "q8_0": (4e-2, 6e-3), "q4_0": (0.5, 0.07)}
VOCAB = 320  # the tokenizer has 300 tokens: ids 300-319 become [PADn] entries, as convert_hf_to_gguf writes them


def _tiny_tokenizer():
    """A 300-token byte-level BPE (gpt2-style) with ChatML specials, trained in milliseconds. The real
    49k-token tokenizer works the same but costs ~10 s of CPU per GGUF read-back (parsing 100k strings)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tk.train_from_iterator(["Hello, my order is late. Where is my refund? The parcel never arrived."] * 20, trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                  pad_token="<|im_end|>", unk_token="<|endoftext|>")
    tok.chat_template = CHATML
    return tok


def _tiny_llama(out: Path, tied: bool, seed: int) -> Path:
    """A 2-layer, 64-wide random Llama as tests/conftest.py builds, with the tiny tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    tok = _tiny_tokenizer()
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         tie_word_embeddings=tied, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                         bos_token_id=tok.bos_token_id)
    torch.manual_seed(seed)
    AutoModelForCausalLM.from_config(config).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def _prompts(model_dir: Path) -> list[list[int]]:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    return [tok("Hello, my order is late")["input_ids"],
            tok("<|im_start|>user\nWhere is my refund?<|im_end|>\n")["input_ids"], list(range(260, 300))]


def _field(reader: gguf.GGUFReader, key: str):
    return reader.fields[key].contents()


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory) -> Path:
    """Tied embeddings (no ``output`` tensor in the GGUF). Shadows conftest's fixture of the same name."""
    return _tiny_llama(tmp_path_factory.mktemp("tiny-tied"), tied=True, seed=0)


@pytest.fixture(scope="module")
def untied_dir(tmp_path_factory) -> Path:
    """Its own output head (``output.weight`` in the GGUF)."""
    return _tiny_llama(tmp_path_factory.mktemp("tiny-untied"), tied=False, seed=1)


@pytest.mark.parametrize("dtype", ["f16", "q8_0"])
def test_tied_export_reads_back(tiny_model_dir, tmp_path, dtype):
    out = tmp_path / f"tiny-{dtype}.gguf"
    summary = write_gguf(tiny_model_dir, out, dtype=dtype, chat_template=TEMPLATE)
    blocks = {f"blk.{i}.{n}.weight" for i in range(2) for n in
              ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down", "attn_norm", "ffn_norm")}
    assert set(summary["tensors"]) == blocks | {"token_embd.weight", "output_norm.weight"}  # tied: no output
    assert summary["bytes"] == out.stat().st_size and len(summary["sha256"]) == 64

    reader = gguf.GGUFReader(out)
    types = {t.name: t.tensor_type.name for t in reader.tensors}
    assert types == summary["tensors"] and len(reader.tensors) == 20
    want = "F16" if dtype == "f16" else "Q8_0"
    assert types["blk.1.attn_q.weight"] == types["token_embd.weight"] == want
    assert types["blk.0.attn_norm.weight"] == types["output_norm.weight"] == "F32"

    assert _field(reader, "general.architecture") == "llama"
    hparams = {"block_count": 2, "context_length": 1024, "embedding_length": 64, "feed_forward_length": 128,
               "attention.head_count": 4, "attention.head_count_kv": 2, "rope.dimension_count": 16}
    assert {k: _field(reader, f"llama.{k}") for k in hparams} == hparams
    config = json.loads((tiny_model_dir / "config.json").read_text())
    assert _field(reader, "llama.vocab_size") == config["vocab_size"]
    assert _field(reader, "llama.rope.freq_base") == pytest.approx(config["rope_parameters"]["rope_theta"])
    assert _field(reader, "llama.attention.layer_norm_rms_epsilon") == pytest.approx(config["rms_norm_eps"])
    assert _field(reader, "tokenizer.ggml.model") == "gpt2"
    assert _field(reader, "tokenizer.ggml.pre") == summary["tokenizer_pre"] == "gpt2"
    tokens = _field(reader, "tokenizer.ggml.tokens")
    assert len(tokens) == VOCAB and tokens[1] == "<|im_start|>" and tokens[-1] == f"[PAD{VOCAB - 1}]"
    token_types = _field(reader, "tokenizer.ggml.token_type")
    assert token_types[:4] == [gguf.TokenType.CONTROL] * 3 + [gguf.TokenType.NORMAL]
    assert token_types[299:] == [gguf.TokenType.NORMAL] + [gguf.TokenType.UNUSED] * 20
    assert len(_field(reader, "tokenizer.ggml.merges")) == 300 - 3 - 256
    assert bool(_field(reader, "tokenizer.ggml.add_bos_token")) is False  # this tokenizer adds no BOS
    assert _field(reader, "tokenizer.ggml.bos_token_id") == config["bos_token_id"]
    assert _field(reader, "tokenizer.ggml.eos_token_id") == config["eos_token_id"]
    assert _field(reader, "tokenizer.chat_template") == TEMPLATE

    prompts = _prompts(tiny_model_dir)
    diff = compare_logits(tiny_model_dir, out, prompts)
    assert diff["positions"] == sum(map(len, prompts))
    assert diff["max_abs_diff"] < BOUNDS[dtype][0] and diff["mean_abs_diff"] < BOUNDS[dtype][1], diff


@pytest.mark.parametrize("dtype", ["f32", "q4_0"])
def test_untied_export_has_output_head(untied_dir, tmp_path, dtype):
    out = tmp_path / "untied.gguf"
    summary = write_gguf(untied_dir, out, dtype=dtype)
    assert summary["n_tensors"] == 21
    if dtype == "q4_0":  # block matrices 4-bit, embeddings and head kept at Q8_0
        assert summary["tensors"]["blk.0.ffn_up.weight"] == "Q4_0"
        assert summary["tensors"]["output.weight"] == summary["tensors"]["token_embd.weight"] == "Q8_0"
    diff = compare_logits(untied_dir, out, _prompts(untied_dir))
    assert diff["max_abs_diff"] < BOUNDS[dtype][0] and diff["mean_abs_diff"] < BOUNDS[dtype][1], diff


def test_q_and_k_rows_are_permuted_as_llama_cpp_does(tiny_model_dir, tmp_path):
    """The F32 file holds permute(q_proj) exactly (and it is not q_proj itself); transformers' inverse undoes it."""
    from safetensors.numpy import load_file
    from transformers.modeling_gguf_pytorch_utils import LlamaTensorProcessor

    out = tmp_path / "f32.gguf"
    write_gguf(tiny_model_dir, out, dtype="f32")
    tensors = {t.name: np.asarray(t.data) for t in gguf.GGUFReader(out).tensors}
    hf = load_file(tiny_model_dir / "model.safetensors")
    q = hf["model.layers.1.self_attn.q_proj.weight"].astype(np.float32)
    k = hf["model.layers.1.self_attn.k_proj.weight"].astype(np.float32)
    assert not np.array_equal(tensors["blk.1.attn_q.weight"], q)
    np.testing.assert_array_equal(tensors["blk.1.attn_q.weight"], permute(q, 4, 4))
    np.testing.assert_array_equal(tensors["blk.1.attn_k.weight"], permute(k, 4, 2))
    undo = LlamaTensorProcessor()._reverse_permute_weights
    np.testing.assert_array_equal(undo(permute(k, 4, 2), 4, 2), k)


def test_unsupported_inputs_are_one_line_user_errors(tiny_model_dir, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(tiny_model_dir, other)
    config = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**config, "model_type": "mistral",
                                                   "architectures": ["MistralForCausalLM"]}))
    with pytest.raises(UserError, match="Llama checkpoints only"):
        write_gguf(other, tmp_path / "x.gguf")

    (other / "config.json").write_text(json.dumps(config))
    doc = json.loads((other / "tokenizer.json").read_text())
    doc["model"]["byte_fallback"] = True  # what a llama sentencepiece tokenizer converted to tokenizer.json looks like
    (other / "tokenizer.json").write_text(json.dumps(doc))
    with pytest.raises(UserError, match="sentencepiece") as err:
        write_gguf(other, tmp_path / "x.gguf")
    assert "\n" not in str(err.value)

    with pytest.raises(UserError, match="q4_k"):
        write_gguf(tiny_model_dir, tmp_path / "x.gguf", dtype="q4_k")  # type: ignore[arg-type]
    assert not (tmp_path / "x.gguf").exists()


@pytest.mark.slow
def test_embedded_model_exports_as_llama_cpp_wrote_it(tmp_path):
    """Re-export the embedded model (cached bf16 checkpoint, converted from llama.cpp's Q4_1 GGUF by
    transformers): same vocabulary fields, tensor names and hyper-parameters as the original file, and
    q/k re-permuted into llama.cpp's layout (a wrong permutation would differ by ~100%, not ~0.1%)."""
    from gguf.quants import dequantize

    from supporttune.models.loading import ensure_embedded_cached, gguf_location

    out = tmp_path / "smollm2.gguf"
    write_gguf(ensure_embedded_cached(), out, dtype="f16")
    ours, theirs = gguf.GGUFReader(out), gguf.GGUFReader(gguf_location())
    for key in ("tokenizer.ggml.model", "tokenizer.ggml.tokens", "tokenizer.ggml.token_type", "tokenizer.ggml.merges",
                "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id", "tokenizer.ggml.padding_token_id",
                "tokenizer.ggml.unknown_token_id", "tokenizer.chat_template", "llama.context_length",
                "llama.rope.freq_base", "llama.attention.head_count_kv", "llama.vocab_size"):
        assert _field(ours, key) == _field(theirs, key), key
    a = {t.name: t for t in ours.tensors}
    b = {t.name: t for t in theirs.tensors}
    assert set(a) == set(b)
    for name in ("blk.0.attn_q.weight", "blk.29.attn_k.weight"):
        x, y = (dequantize(t.data, t.tensor_type) for t in (a[name], b[name]))
        assert np.abs(x - y).mean() < 0.01 * np.abs(y).mean(), name


def _render(template_go: str, messages: list[dict]) -> str:
    """What Ollama renders for ``.Messages``: the range body once per message, then the generation prompt
    (a string substitution of this template's two fields, not a Go template engine: none is installed here)."""
    body = template_go.split("{{- range .Messages }}", 1)[1].split("{{ end }}", 1)[0]
    turns = "".join(body.replace("{{ .Role }}", m["role"]).replace("{{ .Content }}", m["content"]) for m in messages)
    return turns + template_go.rsplit("{{- end }}", 1)[1]


def test_chatml_template_matches_the_tokenizer_chat_template(tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    messages = [{"role": "system", "content": "You are a support agent."},
                {"role": "user", "content": "My parcel is late."},
                {"role": "assistant", "content": "Sorry! Order number?"},
                {"role": "user", "content": "1234"}]
    want = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert _render(chatml_template(), messages) == want


def test_modelfile(tmp_path):
    (tmp_path / "model.gguf").write_bytes(b"GGUF")
    path = write_modelfile(tmp_path, "model.gguf", chatml_template(), {"num_ctx": 2048, "stop": ["<|im_end|>"]},
                           system='Say "hi".')
    text = path.read_text()
    assert text.startswith("FROM ./model.gguf\nTEMPLATE \"\"\"{{- if .Messages }}")
    assert f'TEMPLATE """{chatml_template()}"""' in text
    lines = text.splitlines()
    assert "PARAMETER temperature 0" in lines and "PARAMETER num_ctx 2048" in lines
    assert [x for x in lines if x.startswith("PARAMETER stop")] == ['PARAMETER stop "<|im_end|>"']  # params override
    assert lines[-1] == 'SYSTEM """Say "hi"."""'
    default = write_modelfile(tmp_path, "model.gguf", chatml_template(), {}).read_text()
    assert 'PARAMETER stop "<|im_start|>"\nPARAMETER stop "<|im_end|>"' in default
    with pytest.raises(UserError, match="not found"):
        write_modelfile(tmp_path, "missing.gguf", chatml_template(), {})
    with pytest.raises(UserError, match="triple quotes"):
        write_modelfile(tmp_path, "model.gguf", 'x """ y', {})
