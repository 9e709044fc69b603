"""Load the agents `serve RUN_A RUN_B ...` answers with, sharing base models in memory.

Runs whose adapters sit on the same base (same model, same 4-bit choice, same PEFT type, weight
adapters only) share one PeftModel: the first adapter is loaded with ``PeftModel.from_pretrained``,
the others with ``load_adapter``; respond.py makes an agent's adapter active (``set_adapter``)
under the model's lock for each generation call, so agents of one base take turns. Prompt and
prefix tuning, and runs on other bases, are loaded separately. On a GPU the engine's fast path
keeps one merged copy per architecture and reloads it when the agent changes (slots.py).
With ``--backend`` only the tokenizers are loaded (the backend holds the weights). An export folder is
a run directory too; a merged export is loaded on its own (``load_agent``).

Names: each run's variant name; runs that share one get their directory's name instead.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..inference.agent import Agent, load_agent
from ..models.loading import (
    load_model,
    load_tokenizer,
    pick_device,
    pick_dtype,
)
from ..rundir import ADAPTER, exemplar_index, read_record
from ..train import methods
from .router import agent_names

PROMPT_LEARNING = ("PROMPT_TUNING", "PREFIX_TUNING", "P_TUNING")


def load_agents(runs: list[Path], device: str = "auto", tokenizer_only: bool = False) -> list[Agent]:
    records = [read_record(r) for r in runs]
    names = agent_names(runs, [rec.variant for rec in records])
    if tokenizer_only:
        agents = [Agent(None, _tokenizer(rec), rec.spec, "cpu", name, rec.method, exemplar_index(run, rec.spec))
                  for run, rec, name in zip(runs, records, names)]
    else:
        agents = _load_models(runs, records, names, device)
    for agent, run in zip(agents, runs):
        agent.run_dir = Path(run)
    return agents


def _tokenizer(record):
    tok = load_tokenizer(record.model_ref)
    tok.padding_side = "left"
    return tok


def _share_key(run: Path, record) -> tuple:
    peft_type = json.loads((Path(run) / ADAPTER).read_text(encoding="utf-8")).get("peft_type", "")
    if peft_type in PROMPT_LEARNING:
        return (str(run),)  # alone
    return (json.dumps(record.model, sort_keys=True), methods.get(record.method).quantize_4bit, peft_type)


def _load_models(runs: list[Path], records: list, names: list[str], device: str) -> list[Agent]:
    from peft import PeftModel

    device = pick_device(device)
    dtype = pick_dtype("auto", device)
    groups: dict[tuple, list[int]] = {}
    agents: list[Agent | None] = [None] * len(runs)
    for i, (run, rec) in enumerate(zip(runs, records)):
        if rec.merged:  # a merged export: the folder is the model, no adapter to share
            agents[i] = load_agent(run, device=device)
            agents[i].name = names[i]
            continue
        groups.setdefault(_share_key(run, rec), []).append(i)
    for members in groups.values():
        first = records[members[0]]
        tokenizer = _tokenizer(first)
        base = load_model(first.model_ref, dtype=dtype, device=device,
                          quantize_4bit=methods.get(first.method).quantize_4bit)
        shared = len(members) > 1
        net = None
        for i in members:
            adapter = names[i] if shared else "default"
            if net is None:
                net = PeftModel.from_pretrained(base, str(runs[i]), adapter_name=adapter)
            else:
                net.load_adapter(str(runs[i]), adapter_name=adapter)
        net.eval()
        for i in members:
            rec = records[i]
            agent = Agent(net, tokenizer, rec.spec, device, names[i], rec.method, exemplar_index(runs[i], rec.spec))
            agent.adapter = names[i] if shared else None
            agents[i] = agent
        if shared:
            net.set_adapter(names[members[0]])
    return agents
