import io
import json

import pytest
import torch
from transformers import AutoModelForCausalLM

from supporttune.chat import chat_loop
from supporttune.errors import UserError
from supporttune.export import export
from supporttune.generate import DecodeSettings, generate_replies, load_agent
from supporttune.io import read_jsonl


def test_chat_answers_piped_lines_with_tags(tiny_run):
    agent = load_agent(tiny_run, device="cpu")
    out = io.StringIO()
    n = chat_loop(agent, "ParcelPal", stdin=io.StringIO("Where is my parcel?\n\nI want a refund!!\n"), stdout=out,
                  max_new_tokens=4)
    lines = out.getvalue().splitlines()
    assert n == 2 and len(lines) == 2
    assert lines[0].startswith("[neutral | low priority | question]\t")
    assert lines[1].startswith("[") and "complaint]" in lines[1]


def test_merged_lora_matches_adapter_outputs(tiny_run, builtin_data, tmp_path):
    report = export(tiny_run, tmp_path / "merged", merge=True)
    assert report["merged"] and (tmp_path / "merged" / "model.safetensors").is_file()
    plain = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")  # no supporttune code needed
    assert plain.config.model_type == "llama"
    examples = read_jsonl(builtin_data / "test.jsonl")[:8]
    settings = DecodeSettings(max_new_tokens=8, batch_size=4)
    adapter = load_agent(tiny_run, device="cpu")
    merged = load_agent(model=str(tmp_path / "merged"), device="cpu", spec=adapter.spec)
    merged.model.to(torch.float32)
    a = [g.text for g in generate_replies(adapter, examples, settings, progress=None)]
    b = [g.text for g in generate_replies(merged, examples, settings, progress=None)]
    assert a == b


def test_export_adapter_without_merge_and_refusals(tiny_run, tmp_path, tiny_train_cfg):
    export(tiny_run, tmp_path / "a")
    assert (tmp_path / "a" / "adapter_model.safetensors").is_file()
    assert json.loads((tmp_path / "a" / "base_model.json").read_text())["kind"] == "local"
    with pytest.raises(UserError, match="--force"):
        export(tiny_run, tmp_path / "a")
    from supporttune.train import train

    pt = tiny_train_cfg(method="prompt-tuning", virtual_tokens=4, max_steps=1, out=tmp_path / "pt")
    train(pt)
    with pytest.raises(UserError, match="nothing to merge"):
        export(pt.out, tmp_path / "b", merge=True)
    assert not (tmp_path / "b").exists()


def test_qlora_merge_reports_drift(tiny_train_cfg, tmp_path, builtin_data):
    from supporttune.train import train

    q = tiny_train_cfg(method="qlora", max_steps=1, out=tmp_path / "q")
    train(q)
    report = export(q.out, tmp_path / "qm", merge=True, data=builtin_data, limit=4)
    d = report["qlora_drift"]
    assert d["examples"] == 4 and 0 <= d["identical_share"] <= 1 and 0 <= d["word_agreement"] <= 1
