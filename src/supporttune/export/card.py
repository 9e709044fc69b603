"""The export's README.md model card: what the agent is, how it was measured, how to run it elsewhere.

Written from the export's own record and report (and the run's eval/metrics.json when the run was
evaluated), so the card says only what the folder holds and what was measured.
"""

from __future__ import annotations

from pathlib import Path

from ..core.io import read_json
from ..metrics.scores import headline_text
from .. import suitedir


def _scores(run_dir: Path) -> str:
    path = suitedir.metrics_path(run_dir)
    if not path.is_file():
        return "Not evaluated (run `supporttune evaluate RUN` before exporting to have the scores here)."
    doc = read_json(path)
    return f"{headline_text(doc)} on {doc.get('examples', '?')} test messages (from the run's eval/metrics.json)."


def _base_line(base: dict) -> str:
    digest = f", weights sha256 `{base['digest']}`" if base.get("digest") else ""
    return f"`{base['location']}` ({base['kind']}{digest})"


def _load_section(base: dict, report: dict, folder: str) -> list[str]:
    merged, gguf = report["merged"], report.get("gguf")
    lines = ["## Run it", ""]
    if merged:
        lines += ["transformers (the chat template renders the agent's system turn; pass the brand and the tagger's "
                  "values as template variables):", "", "```python",
                  "from transformers import AutoModelForCausalLM, AutoTokenizer",
                  f"tok = AutoTokenizer.from_pretrained('{folder}')",
                  f"model = AutoModelForCausalLM.from_pretrained('{folder}')",
                  "ids = tok.apply_chat_template([{'role': 'user', 'content': 'Where is my parcel?'}],",
                  "                              add_generation_prompt=True, return_tensors='pt', return_dict=True,",
                  "                              brand='Acme', priority='high', sentiment='negative', category='shipping')",
                  "print(tok.decode(model.generate(**ids, max_new_tokens=64)[0][ids['input_ids'].shape[1]:]))",
                  "```", "",
                  f"vLLM / TGI: `vllm serve {folder}` (chat requests may pass `chat_template_kwargs`: brand, priority, "
                  f"sentiment, category) or `text-generation-launcher --model-id {folder}`.", ""]
    else:
        embedded = base["kind"] == "embedded"
        where = f"~/.cache/supporttune/models/{base['location']}" if embedded else base["location"]
        lines += ["transformers + PEFT" + (" (the base is supporttune's embedded preset: any supporttune command on it "
                                           "materializes it under $SUPPORTTUNE_HOME/models)" if embedded else "") + ":",
                  "", "```python",
                  "import os",
                  "from peft import PeftModel",
                  "from transformers import AutoModelForCausalLM, AutoTokenizer",
                  f"base = AutoModelForCausalLM.from_pretrained(os.path.expanduser('{where}'))  # the recorded base",
                  f"model = PeftModel.from_pretrained(base, '{folder}')",
                  f"tok = AutoTokenizer.from_pretrained('{folder}')  # carries the agent's chat template",
                  "```", "",
                  f"vLLM with LoRA: `vllm serve {where} --enable-lora --lora-modules agent={folder}`.", ""]
    if gguf:
        lines += [f"llama.cpp: `llama-server -m {folder}/{Path(gguf['file']).name} --jinja` (the GGUF carries the "
                  f"agent's chat template). Ollama: `cd {folder} && ollama create agent -f Modelfile && ollama run agent`.",
                  ""]
    lines += [f"supporttune: `supporttune serve {folder}` / `supporttune chat {folder}` rebuild the full training "
              f"prompt (tagger, history, retrieved replies); `supporttune serve {folder} --backend URL` keeps that "
              "prompt here and generates on any OpenAI-compatible engine serving these weights.", ""]
    return lines


def model_card(run_dir: Path, record: dict, report: dict, folder: str = "EXPORT") -> str:
    """The card's Markdown. ``record`` is the export's record (as written), ``report`` its export report."""
    base, spec, export = record["model"], record["prompt"], record["export"]
    lines = [f"# {record['train'].get('name') or record['train']['method']}: a supporttune customer-support agent", "",
             f"- method: {record['train']['method']}"
             + (" (merged into the base)" if report["merged"] else " (adapter; load it on the base below)"),
             f"- base model: {_base_line(base)}",
             f"- trained on: {record['train'].get('data')} (sha256: "
             + ", ".join(f"{k} `{v[:16]}`" for k, v in (record.get("data_sha256") or {}).items()) + ")",
             f"- scores: {_scores(run_dir)}",
             f"- prompt: {spec.get('prompt_format')} format, tags {'on' if spec.get('tags') else 'off'}, "
             f"history {spec.get('history')} turns, retrieved replies {spec.get('retrieve')}",
             f"- exported with merge precision {export.get('merge_dtype', '-')}", ""]
    if "qlora_drift" in report:
        d = report["qlora_drift"]
        lines += [f"QLoRA merge: {d['identical_replies']}/{d['examples']} greedy replies identical to the 4-bit "
                  f"adapter's (word agreement {d['word_agreement']:.1%}).", ""]
    if report.get("gguf"):
        g, c = report["gguf"], report["gguf"]["logits_check"]
        lines += [f"GGUF `{Path(g['file']).name}` ({g['dtype']}, {g['bytes'] / 2**20:.1f} MiB): next-token logits vs "
                  f"this checkpoint on {c['positions']} positions of {c['prompts']} test prompts: max |diff| "
                  f"{c['max_abs_diff']:.4g}, mean {c['mean_abs_diff']:.4g}, argmax agreement {c['argmax_agreement']:.1%}.",
                  ""]
    if spec.get("prompt_format") != "chat":
        lines += ["## The prompt", "", "This agent was trained with the plain prompt format, which the chat "
                  "template does not render: build prompts with supporttune (`serve`, `serve --backend`).", ""]
    else:
        lines += ["## The prompt", "",
                  "The chat template reproduces the training prompt for a plain conversation: the system turn names "
                  "the brand and carries the tags (template variables `brand`, `priority`, `sentiment`, `category`; "
                  "defaults: the export's brand, LOW/NEUTRAL/OTHER), a client's system message is appended to it, and "
                  f"only the last {spec.get('history')} earlier turns are kept. The tagger, retrieved replies"
                  + (" (this agent was trained with them: exemplars.jsonl)" if spec.get("retrieve") else "")
                  + " and cutting long turns need supporttune's prompt builder (`supporttune serve`, or `--backend`).", ""]
    return "\n".join(lines + _load_section(base, report, folder))
