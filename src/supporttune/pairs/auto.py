"""Automatic preference pairs: for each training message, the reference reply is "chosen" and a worse reply "rejected".

Self-play style (SPIN-like): a reply sampled from the SFT run is rejected when it scores below the
reference by ``margin`` points on a sentence utility (the reference scores 100 against itself), so the
pairs say "the team's reply over what the model says now". Optionally the looked-up baselines'
replies (constant, retrieval) are rejected too where they are that much worse. Prompts come from
THE prompt builder with the run's own spec and exemplar index (the agent's prompt), and every row
carries the message ``id``, by which ``train --objective`` rebuilds exactly that prompt.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from ..core.errors import UserError
from ..core.io import check_out_dir, write_jsonl
from ..data.split import load_split
from ..rundir import read_record
from .config import PairsConfig


def check(cfg: PairsConfig) -> tuple[object, Path, list[dict]]:
    """Before a model loads: the run is finished, the data has a training split, the out file may be written."""
    record = read_record(cfg.run)
    data = Path(cfg.data or record.train.get("data", "data"))
    rows = load_split(data, "train")
    check_out(cfg)
    return record, data, rows[: cfg.limit] if cfg.limit else rows


def check_out(cfg: PairsConfig) -> None:
    """The out file may be written (a file, not there yet unless --force, in a writable folder)."""
    if cfg.out.is_dir():
        raise UserError(f"{cfg.out}: is a directory (give a .jsonl file)")
    if cfg.out.exists() and not cfg.force:
        raise UserError(f"{cfg.out}: exists (use --force to overwrite)")
    check_out_dir(cfg.out.parent)


def _baseline_replies(names: list[str], rows: list[dict], data: Path, retrieval: str) -> dict[str, list[str]]:
    from ..evaluate.baselines import BaselineInputs, get

    inputs = BaselineInputs(rows, data, SimpleNamespace(retrieval=retrieval))
    return {name: [reply for reply, _ in get(name).run(inputs)] for name in names}


def _sampled(cfg: PairsConfig, agent, rows: list[dict]) -> list[list[str]]:
    import torch

    from ..inference.decode import DecodeSettings
    from ..inference.generate import generate_replies

    settings = DecodeSettings(max_new_tokens=cfg.max_new_tokens, batch_size=cfg.batch_size, do_sample=True,
                              temperature=cfg.temperature)
    torch.manual_seed(cfg.seed)
    out: list[list[str]] = [[] for _ in rows]
    for k in range(cfg.samples):
        for i, g in enumerate(generate_replies(agent, rows, settings, progress=f"sampling {k + 1}/{cfg.samples}")):
            out[i].append(g.text.strip())
    return out


def pair_rows(rows: list[dict], candidates: list[list[tuple[str, str]]], utility: str, margin: float,
              prompt_of) -> tuple[list[dict], dict]:
    """Rows of TRL's format for the candidates ``(source, reply)`` that score ``margin`` below each reference."""
    from ..inference.mbr import pair_utility

    score = pair_utility(utility)
    out, by_source, seen_total = [], {}, 0
    for row, cands in zip(rows, candidates):
        reference = row["output"].strip()
        seen = set()
        for source, reply in cands:
            seen_total += 1
            if reply in seen or reply == reference:
                continue
            seen.add(reply)
            points = 100 * score(reply, reference)
            if points > 100 - margin:
                continue  # close enough to the reference: no preference to learn
            prompt, chat = prompt_of(row)
            wrap = (lambda t: [{"role": "assistant", "content": t}]) if chat else (lambda t: " " + t)
            out.append({"id": str(row["id"]), "prompt": prompt, "chosen": wrap(reference), "rejected": wrap(reply),
                        "source": source, "rejected_score": round(points, 2)})
            by_source[source] = by_source.get(source, 0) + 1
    return out, {"candidates": seen_total, "pairs": len(out), "by_source": by_source}


def make_pairs(cfg: PairsConfig, log=lambda _m: None) -> dict:
    """Write the automatic pairs of ``cfg.run`` to ``cfg.out``; returns counts."""
    if cfg.feedback is not None:  # served feedback: nothing to sample
        from .feedback import export_feedback

        return export_feedback(cfg)
    record, data, rows = check(cfg)
    candidates: list[list[tuple[str, str]]] = [[] for _ in rows]
    prompt_of = None
    if cfg.samples:
        from ..inference.agent import load_agent

        agent = load_agent(cfg.run, device=cfg.device)
        for i, replies in enumerate(_sampled(cfg, agent, rows)):
            candidates[i] += [("sample", r) for r in replies]
        chat = agent.spec.prompt_format == "chat"
        prompt_of = lambda row: (agent.prompts.messages(row) if chat else agent.prompts.text(row), chat)  # noqa: E731
    else:
        from ..models.loading import load_tokenizer  # no sampling: the tokenizer alone builds the prompts
        from ..prompting.builder import PromptBuilder
        from ..rundir import exemplar_index

        spec = record.spec
        builder = PromptBuilder(load_tokenizer(record.model_ref), spec, exemplar_index(cfg.run, spec))
        chat = spec.prompt_format == "chat"
        prompt_of = lambda row: (builder.messages(row) if chat else builder.text(row), chat)  # noqa: E731
    for name, replies in _baseline_replies(cfg.baselines, rows, data, record.spec.retrieval).items():
        for i, reply in enumerate(replies):
            candidates[i].append((name, reply.strip()))
    out, counts = pair_rows(rows, candidates, cfg.utility, cfg.margin, prompt_of)
    if not out:
        raise UserError(f"no pair: every candidate scored within {cfg.margin} points of its reference "
                        f"(lower --margin or add --samples/--baselines)")
    write_jsonl(cfg.out, out)
    return {"messages": len(rows), **counts, "utility": cfg.utility, "margin": cfg.margin, "out": str(cfg.out)}
