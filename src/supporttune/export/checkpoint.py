"""`supporttune export RUNDIR --out DIR [--merge]`: ship the adapter, or a merged HF checkpoint.

* LoRA/DoRA/IA3 with ``--merge``: the adapter is merged (``merge_and_unload``) into a bf16 copy of
  the base and saved as a standard checkpoint that ``AutoModelForCausalLM.from_pretrained`` loads
  with no supporttune code.
* QLoRA with ``--merge``: merged into a *dequantized* (bf16) base. The adapter was trained against
  the 4-bit base, so the merged model's outputs drift; we measure how far on the test set (greedy
  replies identical / token agreement) and write it to ``export_report.json``. Not done silently.
* Prompt/prefix tuning: nothing to merge (the method registry's ``mergeable`` says which methods
  merge); refused with a clear message. Without ``--merge`` every method exports the adapter plus
  ``base_model.json`` naming its base.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from ..core.errors import UserError
from ..core.io import prepare_out_dir, write_json
from ..core.memory import free_memory
from ..inference.agent import load_agent
from ..inference.decode import DecodeSettings
from ..inference.generate import generate_replies
from ..models.loading import load_model, load_tokenizer
from ..rundir import CONFIG, EXEMPLARS, SUMMARY, read_record
from ..train import methods

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "README.md", CONFIG, SUMMARY, EXEMPLARS)


def _agreement(a: list[str], b: list[str]) -> dict:
    same = sum(x == y for x, y in zip(a, b))
    tok_agree = []
    for x, y in zip(a, b):
        xs, ys = x.split(), y.split()
        n = max(len(xs), len(ys), 1)
        tok_agree.append(sum(p == q for p, q in zip(xs, ys)) / n)
    return {"examples": len(a), "identical_replies": same, "identical_share": same / max(len(a), 1),
            "word_agreement": sum(tok_agree) / max(len(tok_agree), 1)}


def export(run_dir: Path, out: Path, merge: bool = False, force: bool = False, data: Path | None = None,
           limit: int = 32) -> dict:
    record = read_record(run_dir)
    method = methods.get(record.method)
    ref = record.model_ref
    if merge and not method.mergeable:
        what = "virtual tokens, not weight updates" if method.family == "prompt" else "no weight update the base can absorb"
        raise UserError(f"{method.name} learns {what}: there is nothing to merge. "
                        f"Export without --merge to get the adapter plus its base reference.")
    out = prepare_out_dir(out, force)
    report = {"run": str(run_dir), "method": method.name, "base_model": record.model, "merged": merge}
    if not merge:
        for name in ADAPTER_FILES:
            if (Path(run_dir) / name).is_file():
                shutil.copy2(Path(run_dir) / name, out / name)
        write_json(out / "base_model.json", {**record.model, "prompt": record.prompt})
        write_json(out / "export_report.json", report)
        return report
    from peft import PeftModel

    tokenizer = load_tokenizer(ref)
    base = load_model(ref, dtype=torch.bfloat16, device="cpu")
    merged = PeftModel.from_pretrained(base, str(run_dir)).merge_and_unload()
    merged.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    write_json(out / "supporttune_prompt.json", record.prompt)
    if (Path(run_dir) / EXEMPLARS).is_file():  # the merged model prompts with the same retrieved examples
        shutil.copy2(Path(run_dir) / EXEMPLARS, out / EXEMPLARS)
    del merged, base
    free_memory()
    if method.quantize_4bit:
        report["qlora_drift"] = measure_drift(run_dir, out, data or Path(record.train["data"]), limit)
    write_json(out / "export_report.json", report)
    return report


def measure_drift(run_dir: Path, merged_dir: Path, data: Path, limit: int) -> dict:
    """Greedy replies of the 4-bit adapter model vs the merged bf16 model on the test split."""
    from ..data.split import load_split

    examples = load_split(data, "test")[:limit]
    settings = DecodeSettings(max_new_tokens=48, batch_size=16)
    adapter = load_agent(run_dir, device="cpu")
    a = [g.text for g in generate_replies(adapter, examples, settings, progress=None)]
    spec, index = adapter.spec, adapter.index
    del adapter
    free_memory()
    merged = load_agent(model=str(merged_dir), device="cpu", spec=spec)
    merged.index = index
    b = [g.text for g in generate_replies(merged, examples, settings, progress=None)]
    del merged
    free_memory()
    return _agreement(a, b)
