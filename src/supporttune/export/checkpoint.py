"""`supporttune export RUN --out DIR [--merge] [--format gguf]`: an agent folder that stands alone.

The folder is a run directory another machine can load (rundir.py documents it): ``config.yaml`` with the
base named by preset, hub id or absolute path plus its weights' digest (never a path under this machine's
$SUPPORTTUNE_HOME), the prompt spec, ``exemplars.jsonl`` for retrieval agents, the tokenizer whose chat
template renders the agent's system turn (template.py; the training template kept beside it for
supporttune's own builder), a README model card (card.py) and ``export_report.json``. Then either

* the adapter (``adapter_config.json`` naming the same base), for PEFT or vLLM's LoRA support; or
* ``--merge``: LoRA/DoRA/IA3 merged (``merge_and_unload``) into a copy of the base, a standard checkpoint
  transformers, vLLM and TGI load with no supporttune code. QLoRA merges into a *dequantized* base: the
  adapter was trained against the 4-bit base, so replies drift; greedy replies on the test split are
  compared and the export fails below ``min_identical``. Prompt/prefix tuning have nothing to merge.
* ``--format gguf``: merged, then a GGUF file and an Ollama Modelfile (ggufstep.py).

All or nothing: everything is written to a hidden folder beside the target and renamed at the end, so an
interrupted or failed export leaves no target folder (and a rerun has nothing to refuse).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch

from ..core.errors import UserError
from ..core.io import write_json
from ..core.memory import free_memory
from ..inference.agent import load_agent
from ..inference.decode import DecodeSettings
from ..inference.generate import generate_replies
from ..models.loading import TRAINING_TEMPLATE
from ..models.loading import load_config
from ..models.loading import load_model
from ..models.loading import load_tokenizer
from ..models.loading import portable_ref
from ..rundir import ADAPTER
from ..rundir import EXPORT_REPORT
from ..rundir import MODEL_CARD
from ..rundir import SUMMARY
from ..rundir import RunRecord
from ..rundir import copy_exemplars
from ..rundir import read_record
from ..rundir import recorded_path
from ..train import methods

from .card import model_card
from .config import ExportConfig
from .template import agent_template

ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")


def _agreement(a: list[str], b: list[str]) -> dict:
    same = sum(x == y for x, y in zip(a, b))
    tok_agree = []
    for x, y in zip(a, b):
        xs, ys = x.split(), y.split()
        n = max(len(xs), len(ys), 1)
        tok_agree.append(sum(p == q for p, q in zip(xs, ys)) / n)
    return {"examples": len(a), "identical_replies": same, "identical_share": same / max(len(a), 1),
            "word_agreement": sum(tok_agree) / max(len(tok_agree), 1)}


def _check_target(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise UserError(f"{out}: export directory exists and is not empty (use --force to replace it)")


def _check_request(cfg: ExportConfig, record: RunRecord, merge: bool) -> Path | None:
    """Everything that can be refused, refused before a model loads; returns the data folder checks need."""
    if record.merged:
        raise UserError(f"{cfg.run}: already a merged export; export from the training run")
    method = methods.get(record.method)
    if merge and not method.mergeable:
        what = "virtual tokens, not weight updates" if method.family == "prompt" else "no weight update the base can absorb"
        raise UserError(f"{method.name} learns {what}: there is nothing to merge. "
                        f"Export without --merge/--format gguf to get the adapter plus its base reference.")
    if cfg.format == "gguf":
        model_type = getattr(load_config(record.model_ref), "model_type", None)
        if model_type != "llama":
            raise UserError(f"GGUF export supports Llama-architecture bases only; this run's base is {model_type!r}: "
                            f"use --merge (a transformers checkpoint for vLLM/TGI) instead")
    _check_target(Path(cfg.out), cfg.force)
    needs_data = cfg.format == "gguf" or (merge and method.quantize_4bit)
    if not needs_data:
        return None
    return Path(cfg.data).resolve() if cfg.data else recorded_path(cfg.run, record.train["data"], "data", "--data")


def _portable_record(record: RunRecord, base: dict, cfg: ExportConfig, merge: bool) -> dict:
    """The run's record with the base named portably (also in the train config) and an ``export`` block."""
    doc = record.model_dump(mode="json")
    original = record.model.get("name")
    for block in ("train", "identity"):
        if isinstance(doc.get(block), dict) and doc[block].get("model") == original:
            doc[block]["model"] = base["name"]
    doc["model"] = base
    doc["export"] = {"merged": merge, "format": cfg.format, "merge_dtype": cfg.merge_dtype if merge else None,
                     "brand": cfg.brand, "from_run": Path(cfg.run).resolve().name, "run_config_hash": record.config_hash}
    return doc


def _write_tokenizer(record: RunRecord, folder: Path, brand: str | None) -> None:
    """The base tokenizer with the agent's chat template; the training template kept for supporttune."""
    tokenizer = load_tokenizer(record.model_ref)
    training = tokenizer.chat_template
    spec = record.spec
    if spec.prompt_format == "chat" and training:
        tokenizer.chat_template = agent_template(training, spec, brand)
    tokenizer.save_pretrained(folder)
    if training:
        (folder / TRAINING_TEMPLATE).write_text(training, encoding="utf-8")


def _write_adapter(run_dir: Path, folder: Path, base: dict) -> None:
    for name in ADAPTER_WEIGHTS:
        if (run_dir / name).is_file():
            shutil.copy2(run_dir / name, folder / name)
    adapter = json.loads((run_dir / ADAPTER).read_text(encoding="utf-8"))
    adapter["base_model_name_or_path"] = base["location"]  # a preset/hub id or absolute path, not this machine's cache
    (folder / ADAPTER).write_text(json.dumps(adapter, indent=2, sort_keys=True), encoding="utf-8")


def _write_merged(run_dir: Path, record: RunRecord, folder: Path, dtype: str) -> None:
    from peft import PeftModel

    torch_dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[dtype]
    base = load_model(record.model_ref, dtype=torch_dtype, device="cpu")
    merged = PeftModel.from_pretrained(base, str(run_dir)).merge_and_unload()
    merged.save_pretrained(folder, safe_serialization=True)
    del merged, base
    free_memory()


def _fill(cfg: ExportConfig, record: RunRecord, folder: Path, merge: bool, data: Path | None) -> dict:
    """Write the export into ``folder`` (the hidden temporary one); return its report."""
    run_dir = Path(cfg.run)
    method = methods.get(record.method)
    base = portable_ref(record.model_ref)
    report: dict = {"run": str(run_dir.resolve()), "method": method.name, "base_model": base, "merged": merge,
                    "format": cfg.format}
    _write_tokenizer(record, folder, cfg.brand)
    copy_exemplars(run_dir, folder, record.spec)
    if (run_dir / SUMMARY).is_file():
        shutil.copy2(run_dir / SUMMARY, folder / SUMMARY)
    if merge:
        _write_merged(run_dir, record, folder, cfg.merge_dtype)
    else:
        _write_adapter(run_dir, folder, base)
    doc = _portable_record(record, base, cfg, merge)
    RunRecord(**doc).write(folder)
    if merge and method.quantize_4bit:
        drift = measure_drift(run_dir, folder, data, cfg.drift_examples)
        report["qlora_drift"] = drift
        if drift["identical_share"] < cfg.min_identical:
            raise UserError(f"QLoRA merge drifts: {drift['identical_replies']}/{drift['examples']} greedy replies identical "
                            f"to the 4-bit adapter's (needs {cfg.min_identical:.0%}); export the adapter instead "
                            f"(no --merge), or merge in higher precision (--merge-dtype fp32)")
    if cfg.format == "gguf":
        from .ggufstep import export_gguf

        report["gguf"] = export_gguf(folder, record.spec, cfg.gguf_type, cfg.brand, data, cfg.check_prompts)
    write_json(folder / EXPORT_REPORT, report)
    (folder / MODEL_CARD).write_text(model_card(run_dir, doc, report, folder=Path(cfg.out).name), encoding="utf-8")
    return report


def export(cfg: ExportConfig) -> dict:
    """Write the export of ``cfg.run`` to ``cfg.out`` in one piece; return its report."""
    record = read_record(cfg.run)
    merge = cfg.merge or cfg.format == "gguf"
    data = _check_request(cfg, record, merge)
    out = Path(cfg.out).absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        report = _fill(cfg, record, tmp, merge, data)
        if out.exists():  # --force (checked above); replaced only now that the new one is complete
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone after the rename; a failure leaves nothing
    return report


def measure_drift(run_dir: Path, merged_dir: Path, data: Path, limit: int) -> dict:
    """Greedy replies of the 4-bit adapter model vs the merged model on the test split."""
    from ..data.split import load_split

    examples = load_split(data, "test")[:limit]
    settings = DecodeSettings(max_new_tokens=48, batch_size=16)
    adapter = load_agent(run_dir, device="cpu")
    a = [g.text for g in generate_replies(adapter, examples, settings, progress=None)]
    del adapter
    free_memory()
    merged = load_agent(merged_dir, device="cpu")  # the export: same prompt spec and exemplar index
    b = [g.text for g in generate_replies(merged, examples, settings, progress=None)]
    del merged
    free_memory()
    return _agreement(a, b)
