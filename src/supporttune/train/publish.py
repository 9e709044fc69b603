"""What a finished run folder shows to whoever opens it: a real README card and weight files others can read.

PEFT's ``save_pretrained`` leaves an empty model-card template naming a local path, and safetensors
files are written through a private temporary file (mode 0600), so a teammate on the same machine
or a web server could not read the adapter. Train calls ``publish`` once the adapter is saved;
evaluate calls ``write_card`` again so the card shows the scores.
"""

from __future__ import annotations

import os
from pathlib import Path

from supporttune import rundir
from supporttune import suitedir
from supporttune.core.io import read_json
from supporttune.metrics.scores import headline_text


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def share_weights(run_dir: Path) -> None:
    """Weight files readable as any other file the user writes (0644 under the usual umask 022)."""
    mode = 0o666 & ~_umask()
    for f in Path(run_dir).glob("*.safetensors"):
        os.chmod(f, mode)


def _base_for_transformers(record: rundir.RunRecord) -> tuple[str, str]:
    """What ``from_pretrained`` takes for the base model, and a note when it is a folder on this machine."""
    ref = record.model
    if ref.get("kind") == "hub":
        return ref["location"], ""
    return ref["location"], (f" (`{ref['location']}` is the base model's folder on the training machine; "
                             "`supporttune export` with `--merge` writes a standalone checkpoint)")


def _scores(run_dir: Path) -> list[str]:
    path = suitedir.metrics_path(run_dir)
    if not path.is_file():
        return [f"Not evaluated yet: `supporttune evaluate --run {run_dir} --data DATA` adds the scores here.", ""]
    m = read_json(path)
    return [f"On {m.get('examples', '?')} {m.get('split', 'test')} messages "
            f"(max {(m.get('decoding') or {}).get('max_new_tokens', '?')} new tokens): {headline_text(m)}.",
            "", f"Every metric, with CIs and breakdowns: `eval/{suitedir.METRICS}`.", ""]


def _num(x) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def card_text(run_dir: Path) -> str:
    """The README.md of a run: what was trained on what, with which prompt, how well, and how to load it."""
    run_dir = Path(run_dir)
    record = rundir.read_record(run_dir, finished=False)
    t, summary = record.train, rundir.summary(run_dir) or {}
    method = record.method
    shape = (f"r {t.get('r')}, alpha {t.get('alpha')}, targets {', '.join(t.get('targets') or [])}"
             if method in ("lora", "qlora", "dora") else
             f"targets {', '.join(t.get('targets') or [])}" if method == "ia3" else f"{t.get('virtual_tokens')} virtual tokens")
    extra = record.model_extra or {}
    digests = extra.get("data_sha256") or {}
    counts = {"train": summary.get("train_examples"), "val": summary.get("val_examples")}
    data = "; ".join(f"{s} sha256 {d[:12]}" + (f" ({counts[s]} pairs)" if counts.get(s) is not None else "")
                     for s, d in digests.items() if d)
    prompt = ", ".join(f"{k} {v}" for k, v in record.prompt.items() if not isinstance(v, (dict, list)))
    base, note = _base_for_transformers(record)
    hub = record.model.get("location") if record.model.get("kind") == "hub" else None
    version = (extra.get("versions") or {}).get("supporttune", "")
    lines = ["---", "library_name: peft", *([f"base_model: {hub}"] if hub else []),
             f"tags: [supporttune, customer-support, {method}]", "---", "",
             f"# {record.variant}: a {method} adapter for customer-support replies", "",
             f"Trained with supporttune {version} on the base model **{record.model.get('name')}**.", "",
             "| | |", "|---|---|",
             f"| method | {method} ({shape}) |",
             f"| base model | {record.model.get('name')} ({record.model.get('kind')}) |",
             f"| trainable parameters | {record.trainable_params:,} of {record.total_params:,} |",
             f"| training | {summary.get('steps', '?')} steps, final train loss {_num(summary.get('final_train_loss'))}, "
             f"val loss {_num(summary.get('final_val_loss'))}, {record.device}/{record.dtype} |",
             f"| data | {data or 'not recorded'} |",
             f"| prompt | {prompt} |",
             f"| config hash | {record.config_hash} |", "",
             "## Scores", "", *_scores(run_dir),
             "## Use it", "",
             "The reply quality depends on the exact training prompt (its spec is in `config.yaml`); supporttune "
             "rebuilds it for you:", "",
             "```bash",
             f"supporttune chat {run_dir}                # talk to it in the terminal",
             f"supporttune serve {run_dir} --port 8000   # OpenAI-compatible HTTP API",
             f"supporttune export {run_dir} --out DIR    # the adapter, or --merge for a standalone model",
             "```", "",
             f"With transformers + peft (build the prompt as `config.yaml`'s `prompt` says){note}:", "",
             "```python",
             "from peft import PeftModel",
             "from transformers import AutoModelForCausalLM, AutoTokenizer",
             "",
             f'base = AutoModelForCausalLM.from_pretrained("{base}")',
             f'tokenizer = AutoTokenizer.from_pretrained("{base}")',
             f'model = PeftModel.from_pretrained(base, "{run_dir}")  # this folder',
             "```", ""]
    return "\n".join(lines)


def write_card(run_dir: Path) -> Path:
    path = Path(run_dir) / rundir.CARD
    path.write_text(card_text(run_dir), encoding="utf-8")
    return path


def publish(run_dir: Path) -> None:
    """After the adapter is saved: our card replaces PEFT's template, and the weights become readable."""
    share_weights(run_dir)
    write_card(run_dir)
