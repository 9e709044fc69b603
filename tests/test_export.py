"""`supporttune export`: the adapter with its base reference, or a merged standard checkpoint."""

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from supporttune.core.errors import UserError
from supporttune.export.checkpoint import _agreement, export
from supporttune.export.config import ExportConfig
from supporttune.inference.decode import DecodeSettings
from supporttune.inference.generate import generate_replies
from supporttune.inference.agent import load_agent
from supporttune.core.io import read_jsonl
from supporttune.rundir import read_record


@pytest.mark.slow
def test_merged_lora_matches_adapter_outputs(tiny_run, builtin_data, tmp_path):
    report = export(ExportConfig(run=tiny_run, out=tmp_path / "merged", merge=True))
    assert report["merged"] and (tmp_path / "merged" / "model.safetensors").is_file()
    plain = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")  # no supporttune code needed
    assert plain.config.model_type == "llama"
    examples = read_jsonl(builtin_data / "test.jsonl")[:8]
    settings = DecodeSettings(max_new_tokens=8, batch_size=4)
    adapter = load_agent(tiny_run, device="cpu")
    merged = load_agent(tmp_path / "merged", device="cpu")  # the export: its own prompt spec
    merged.model.to(torch.float32)
    a = [g.text for g in generate_replies(adapter, examples, settings, progress=None)]
    b = [g.text for g in generate_replies(merged, examples, settings, progress=None)]
    assert a == b and any(a)


def test_export_adapter_without_merge_and_refusals(tiny_runs, tmp_path):
    lora, _ = tiny_runs("lora")
    report = export(ExportConfig(run=lora.out, out=tmp_path / "a"))
    assert not report["merged"] and report["method"] == "lora"
    assert (tmp_path / "a" / "adapter_model.safetensors").read_bytes() == (lora.out / "adapter_model.safetensors").read_bytes()
    base = read_record(tmp_path / "a")
    assert base.model["kind"] == "local" and base.model["location"] == str(Path(lora.model).resolve())
    assert base.spec.prompt_format == "chat" and not base.merged
    with pytest.raises(UserError, match="--force"):
        export(ExportConfig(run=lora.out, out=tmp_path / "a"))
    pt, _ = tiny_runs("prompt-tuning")
    with pytest.raises(UserError, match="nothing to merge"):
        export(ExportConfig(run=pt.out, out=tmp_path / "b", merge=True))
    assert not (tmp_path / "b").exists()


def test_agreement_counts_identical_replies_and_shared_words():
    a = ["a b c", "x y", "same", ""]
    b = ["a b d", "x y z", "same", ""]
    got = _agreement(a, b)
    assert got["examples"] == 4 and got["identical_replies"] == 2 and got["identical_share"] == 0.5
    assert got["word_agreement"] == pytest.approx((2 / 3 + 2 / 3 + 1 + 0) / 4)  # empty vs empty: no words agree


@pytest.mark.slow
def test_qlora_merge_reports_drift(tiny_runs, tmp_path, builtin_data):
    q, _ = tiny_runs("qlora")
    report = export(ExportConfig(run=q.out, out=tmp_path / "qm", merge=True, data=builtin_data, drift_examples=4,
                                 min_identical=0))
    d = report["qlora_drift"]
    assert json.loads((tmp_path / "qm" / "export_report.json").read_text())["qlora_drift"] == d
    # the reported drift is that of the 4-bit adapter vs the merged bf16 model, recomputed here
    examples = read_jsonl(builtin_data / "test.jsonl")[:4]
    settings = DecodeSettings(max_new_tokens=48, batch_size=16)
    adapter = load_agent(q.out, device="cpu")
    a = [g.text for g in generate_replies(adapter, examples, settings, progress=None)]
    merged = load_agent(tmp_path / "qm", device="cpu")
    b = [g.text for g in generate_replies(merged, examples, settings, progress=None)]
    assert d == _agreement(a, b) and d["examples"] == 4
