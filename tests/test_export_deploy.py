"""Exports that stand alone (issue 25 parts 1-2): loaded elsewhere with plain transformers/PEFT they build the
same prompt tokens as `supporttune chat`'s agent; GGUF round trip through the CLI; a drifting merge and an
interrupted export leave nothing; serve and chat accept an export folder."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import gguf
import pytest
import torch
import yaml

from supporttune.core.errors import UserError
from supporttune.export import checkpoint
from supporttune.export.checkpoint import export
from supporttune.export.config import ExportConfig
from supporttune.inference.agent import load_agent
from supporttune.models.loading import weights_digest
from supporttune.rundir import read_record, recorded_path
from supporttune.serve.agents import load_agents
from supporttune.serve.chat import chat_loop

EXAMPLE = {"input": "It still has not arrived, where is my parcel?", "brand": "ParcelPal", "priority": "high",
           "sentiment": "negative", "category": "shipping",
           "history": [{"role": "user", "content": "Hi, I ordered shoes last week."},
                       {"role": "assistant", "content": "Thanks, could you send the order number?"}]}
CONVERSATION = EXAMPLE["history"] + [{"role": "user", "content": EXAMPLE["input"]}]
TAGS = {k: EXAMPLE[k] for k in ("brand", "priority", "sentiment", "category")}

# Runs in a fresh interpreter, elsewhere, with no supporttune import: what a deploying team would write.
STANDALONE = """
import json, sys, torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from peft import AutoPeftModelForCausalLM
conv, tags, out = json.loads(sys.argv[1]), json.loads(sys.argv[2]), {}
for kind, folder in (("adapter", sys.argv[3]), ("merged", sys.argv[4])):
    tok = AutoTokenizer.from_pretrained(folder)
    load = AutoPeftModelForCausalLM if kind == "adapter" else AutoModelForCausalLM
    model = load.from_pretrained(folder, dtype=torch.float32).eval()
    ids = list(tok.apply_chat_template(conv, add_generation_prompt=True, tokenize=True, return_dict=True, **tags)["input_ids"])
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0, -1]
    out[kind] = {"ids": ids, "logits": logits[:64].tolist()}
out["imported_supporttune"] = any(m.startswith("supporttune") for m in sys.modules)
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def exports(tiny_run, tmp_path_factory):
    """An adapter and an fp32-merged export, made from another directory with a relative --out."""
    where = tmp_path_factory.mktemp("exporter")
    here = os.getcwd()
    os.chdir(where)
    try:
        export(ExportConfig(run=tiny_run, out=Path("adapter-export")))
        export(ExportConfig(run=tiny_run, out=Path("merged-export"), merge=True, merge_dtype="fp32"))
    finally:
        os.chdir(here)
    return where / "adapter-export", where / "merged-export"


def test_export_records_base_by_absolute_path_and_digest_with_card(exports, tiny_model_dir, tiny_run):
    adapter, merged = exports
    for folder in exports:
        rec = read_record(folder)
        saved = yaml.safe_load((folder / "config.yaml").read_text())["model"]
        assert saved["kind"] == "local" and saved["location"] == str(tiny_model_dir.resolve())
        assert saved["digest"] == weights_digest(tiny_model_dir) and len(saved["digest"]) == 64
        assert rec.export["from_run"] == Path(tiny_run).name and rec.train["model"] == saved["name"]
        card = (folder / "README.md").read_text()
        assert "lora" in card and saved["digest"] in card and "Not evaluated" in card
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(tiny_model_dir.resolve())
    assert read_record(merged).merged and read_record(merged).model["location"] == str(merged.resolve())
    assert not list(adapter.parent.glob(".*partial*"))


@pytest.mark.slow
def test_export_loads_elsewhere_with_plain_transformers_and_builds_chat_prompt(exports, tiny_run, tmp_path):
    """Fresh process, other cwd, other SUPPORTTUNE_HOME: the template gives the agent's prompt_ids, and the model
    the adapter agent's logits."""
    adapter, merged = exports
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"SUPPORTTUNE_HOME": str(tmp_path / "home")}
    res = subprocess.run([sys.executable, "-c", STANDALONE, json.dumps(CONVERSATION), json.dumps(TAGS), str(adapter),
                          str(merged)], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert not got["imported_supporttune"]
    agent = load_agent(tiny_run, device="cpu")  # what `supporttune chat RUN` answers with
    want = agent.prompt_ids(EXAMPLE)
    assert got["adapter"]["ids"] == want and got["merged"]["ids"] == want
    with torch.no_grad():
        logits = agent.model(torch.tensor([want])).logits[0, -1, :64]
    for kind in ("adapter", "merged"):
        assert torch.allclose(torch.tensor(got[kind]["logits"]), logits, atol=1e-4), kind
    for folder in exports:  # and supporttune itself rebuilds the same prompt from the export
        assert load_agent(folder, device="cpu").prompt_ids(EXAMPLE) == want


@pytest.mark.slow
def test_retrieval_agent_export_carries_its_exemplar_index(tiny_train_cfg, tmp_path):
    from supporttune.train.stage import train

    cfg = tiny_train_cfg(retrieve=2, max_steps=2, out=tmp_path / "rag")
    train(cfg)
    export(ExportConfig(run=cfg.out, out=tmp_path / "rag-export"))
    run, exp = load_agent(cfg.out, device="cpu"), load_agent(tmp_path / "rag-export", device="cpu")
    assert (tmp_path / "rag-export" / "exemplars.jsonl").is_file() and exp.index is not None
    assert exp.prompt_ids(EXAMPLE) == run.prompt_ids(EXAMPLE)
    assert "Replies this team gave" in exp.prompts.text(EXAMPLE)


@pytest.mark.slow
def test_gguf_export_round_trip_via_cli(cli, tiny_run, tmp_path):
    out = tmp_path / "gguf-export"
    res = cli("export", tiny_run, "--out", out, "--format", "gguf", "--gguf-type", "q8_0", "--brand", "ParcelPal")
    assert res.returncode == 0, res.stderr
    report = json.loads((out / "export_report.json").read_text())
    g = report["gguf"]
    check = g["logits_check"]
    assert report["merged"] and g["file"] == "model-q8_0.gguf" and check["prompts"] == 4 and check["positions"] > 100
    assert check["max_abs_diff"] < 0.05 and check["argmax_agreement"] > 0.9, check
    assert "max |diff|" in res.stdout and "max |diff|" in (out / "README.md").read_text()
    modelfile = (out / "Modelfile").read_text()
    assert modelfile.startswith("FROM ./model-q8_0.gguf") and "customer support agent for ParcelPal" in modelfile
    reader = gguf.GGUFReader(out / "model-q8_0.gguf")
    field = reader.fields["tokenizer.chat_template"]
    template = bytes(field.parts[field.data[0]]).decode()
    assert "st_system" in template and "ParcelPal" in template


def test_gguf_refuses_non_llama_base(tiny_run, tmp_path, monkeypatch):
    class Config:
        model_type = "qwen2"

    monkeypatch.setattr(checkpoint, "load_config", lambda ref: Config())
    with pytest.raises(UserError, match="Llama-architecture bases only"):
        export(ExportConfig(run=tiny_run, out=tmp_path / "g", format="gguf"))
    assert not (tmp_path / "g").exists()


def test_drifting_qlora_merge_exits_non_zero_and_leaves_nothing(cli, tiny_runs, tmp_path, monkeypatch):
    q, _ = tiny_runs("qlora")
    drift = {"examples": 32, "identical_replies": 0, "identical_share": 0.0, "word_agreement": 0.1}
    monkeypatch.setattr(checkpoint, "measure_drift", lambda *a: drift)
    res = cli("export", q.out, "--out", tmp_path / "qm", "--merge")
    last = res.stderr.strip().splitlines()[-1]  # (above it: the loaders' progress bars)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "0/32" in last and "export the adapter instead" in last and "--merge-dtype fp32" in last
    assert list(tmp_path.iterdir()) == []


def test_interrupted_export_leaves_no_folder_and_rerun_needs_no_force(tiny_run, tmp_path, monkeypatch):
    real = checkpoint._write_adapter

    def interrupted(run_dir, folder, base):
        (folder / "adapter_model.safetensors").write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint, "_write_adapter", interrupted)
    with pytest.raises(KeyboardInterrupt):
        export(ExportConfig(run=tiny_run, out=tmp_path / "x"))
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(checkpoint, "_write_adapter", real)
    export(ExportConfig(run=tiny_run, out=tmp_path / "x"))
    assert (tmp_path / "x" / "adapter_model.safetensors").stat().st_size > 100


def test_recorded_relative_data_path_is_found_from_elsewhere(tmp_path, monkeypatch):
    suite = tmp_path / "suite"
    (suite / "data").mkdir(parents=True)
    (suite / "variants" / "lora").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "suite" / "variants")
    assert recorded_path(suite / "variants" / "lora", "data", "data", "--data") == (suite / "data").resolve()
    with pytest.raises(UserError, match="--data"):
        recorded_path(suite / "variants" / "lora", "nowhere", "data", "--data")


@pytest.mark.slow
def test_serve_and_chat_accept_an_export(exports, tiny_run, cli):
    adapter, merged = exports
    agents = load_agents([adapter, merged], device="cpu")
    fronts = load_agents([merged], tokenizer_only=True)
    want = load_agent(tiny_run, device="cpu").prompt_ids(EXAMPLE)
    assert [a.prompt_ids(EXAMPLE) for a in agents + fronts] == [want] * 3
    with socket.create_server(("127.0.0.1", 0)) as taken:  # gets past reading the export, stops at the port
        res = cli("serve", merged, "--port", taken.getsockname()[1])
    assert res.returncode == 2 and "cannot listen" in res.stderr
    replies = []
    for agent in (load_agent(tiny_run, device="cpu"), agents[1]):
        out = io.StringIO()
        chat_loop(agent, "ParcelPal", stdin=io.StringIO("Where is my parcel?\n"), stdout=out, max_new_tokens=6)
        replies.append(out.getvalue())
    assert replies[0] == replies[1]
