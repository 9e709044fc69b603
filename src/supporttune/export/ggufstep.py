"""`export --format gguf`: the merged export's GGUF file and Ollama Modelfile, checked against the checkpoint.

The GGUF carries the export's chat template (template.py: the agent's system turn), which llama.cpp's
server renders with ``--jinja``. Ollama does not run Jinja: its Modelfile gets a ChatML Go template
(modelfile.py) and, as SYSTEM, the agent's system turn for an untagged message from the export's brand.
The check: next-token logits of the GGUF (read back by transformers) vs the merged checkpoint on a few
test prompts built by the agent's own prompt builder; max and mean difference go into the report.
"""

from __future__ import annotations

from pathlib import Path

from ..models.loading import ModelRef
from ..models.loading import load_tokenizer
from ..prompting.builder import PromptBuilder
from ..prompting.spec import PromptSpec
from ..rundir import exemplar_index
from .gguf import compare_logits
from .gguf import write_gguf
from .modelfile import CHATML_STOPS
from .modelfile import chatml_template
from .modelfile import write_modelfile
from .template import default_system


def check_prompts(folder: Path, spec: PromptSpec, data: Path, n: int) -> list[list[int]]:
    """Prompt ids of the first ``n`` test messages, as the exported agent's builder renders them."""
    from ..data.split import load_split

    tokenizer = load_tokenizer(ModelRef("export", "local", str(folder)))  # the training template (TRAINING_TEMPLATE)
    builder = PromptBuilder(tokenizer, spec, exemplar_index(folder, spec))
    return [builder.ids(e) for e in load_split(data, "test")[:n]]


def export_gguf(folder: Path, spec: PromptSpec, gguf_type: str, brand: str | None, data: Path, n_prompts: int) -> dict:
    """Write ``model-TYPE.gguf`` and ``Modelfile`` into ``folder`` (a merged export); return the summary."""
    from transformers import AutoTokenizer

    name = f"model-{gguf_type}.gguf"
    template = AutoTokenizer.from_pretrained(folder).chat_template  # the export's (agent) template
    summary = write_gguf(folder, folder / name, gguf_type, chat_template=template)
    summary["file"] = name  # relative: the folder moves (renamed into place, copied to a server)
    summary.pop("tensors")  # per-tensor types: llama.cpp's gguf-dump shows them
    prompts = check_prompts(folder, spec, data, n_prompts)
    summary["logits_check"] = {"prompts": len(prompts), **compare_logits(folder, folder / name, prompts)}
    vocab = AutoTokenizer.from_pretrained(folder).get_vocab()
    if spec.prompt_format == "chat" and all(t in vocab for t in CHATML_STOPS):
        write_modelfile(folder, name, chatml_template(), params={"num_predict": 64}, system=default_system(spec, brand))
        summary["modelfile"] = "Modelfile"
    else:  # the Go template is ChatML's; another template (or the plain format) would prompt the model wrongly
        summary["modelfile"] = None
        summary["modelfile_note"] = "not written: the base's chat format is not ChatML (or the agent uses the plain format)"
    return summary

