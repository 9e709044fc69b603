"""An agent ready to answer: base model (+ adapter), tokenizer, and the exact prompt of its training.

``load_agent`` reads a run directory (or an export of one: adapter, or merged checkpoint) through its
record (rundir.py), so evaluate, chat, serve and export get the same prompt spec and the same exemplar index that training used, with no flags.
``Agent.prompt_ids`` is the one way inference turns an example into prompt tokens: the prompt
builder attaches the retrieved examples (never from the example's own thread) and renders it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..models.loading import (
    load_model,
    load_tokenizer,
    pick_device,
    pick_dtype,
    resolve,
)
from ..models.presets import DEFAULT_MODEL
from ..prompting.builder import PromptBuilder
from ..prompting.retrieval import ExemplarIndex
from ..prompting.spec import PromptSpec


@dataclass
class Agent:
    """A model ready to answer, with the prompt spec (and exemplar index) it was trained with."""

    model: object
    tokenizer: object
    spec: PromptSpec
    device: str
    name: str
    method: str | None = None
    index: ExemplarIndex | None = None

    @property
    def sentiment(self) -> str:
        return self.spec.sentiment

    @property
    def prompts(self) -> PromptBuilder:
        return PromptBuilder(self.tokenizer, self.spec, self.index)

    def prompt_ids(self, example: dict) -> list[int]:
        """The prompt tokens for one example (its ``shots``, if any, shown first: the few-shot baseline)."""
        return self.prompts.ids(example)


def load_agent(run_dir: Path | None = None, model: str | None = None, device: str = "auto",
               spec: PromptSpec | None = None) -> Agent:
    """Load a trained run (adapter on its base) or, with ``model``, an untuned base model."""
    device = pick_device(device)
    dtype = pick_dtype("auto", device)
    if run_dir is not None:
        from peft import PeftModel

        from ..rundir import exemplar_index, read_record
        from ..train import methods

        record = read_record(run_dir)
        method = methods.get(record.method)
        ref = record.model_ref  # an export's base by preset/hub id/path; a merged export: the folder itself
        tokenizer = load_tokenizer(ref)
        if record.merged:
            net = load_model(ref, dtype=dtype, device=device)
        else:
            base = load_model(ref, dtype=dtype, device=device, quantize_4bit=method.quantize_4bit)
            net = PeftModel.from_pretrained(base, str(run_dir))
        spec = record.spec
        index = exemplar_index(run_dir, spec)
        name, method_name = record.variant, record.method
    else:
        ref = resolve(model or DEFAULT_MODEL)
        tokenizer = load_tokenizer(ref)
        net = load_model(ref, dtype=dtype, device=device)
        spec, name, method_name, index = spec or PromptSpec(), f"base:{ref.name}", None, None
    net.eval()
    tokenizer.padding_side = "left"
    return Agent(net, tokenizer, spec, device, name, method_name, index)
