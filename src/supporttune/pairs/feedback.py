"""``supporttune preferences RUN --feedback FILE``: what users said about served replies, as a preference file.

``serve`` appends each ``POST /v1/feedback`` to a store (serve/feedback.py documents a record). This
turns the records about RUN's replies into the file ``train --objective dpo|kto|orpo --from RUN
--preferences FILE`` reads, in the shapes the rating export writes (rate/export.py):

  * ``--shape pairs`` (default): a record with a correction is a pair, the correction chosen over the
    reply served; a thumb without a correction says nothing about a better reply and is left out.
  * ``--shape kto``: TRL's unpaired rows; a thumbs-up reply desirable, a thumbs-down reply undesirable,
    a correction desirable (the reply it corrects keeps its thumb's label).

The prompt is the one the agent saw: the served message's example is rebuilt as ``serve`` builds it
(``respond.live_example``: tags, brand, history, the client's system message) and rendered by THE
prompt builder with RUN's spec, tokenizer and exemplar index (``PromptSource.from_run``, as the rating
export does). Each row carries that example (``"example"``), from which ``train`` rebuilds the very
prompt ids (train/prefdata.py: split ``live``). Records about other agents of the same server (another
run) are skipped and counted; a response rated twice counts once, with its latest record. Every check
runs before the tokenizer loads: a bad store fails in one line naming FILE:LINE.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from supporttune.core.errors import UserError
from supporttune.core.io import write_jsonl
from supporttune.pairs.config import PairsConfig
from supporttune.rundir import read_record
from supporttune.serve.feedback import load_feedback


def _same_run(recorded: str | None, run: Path) -> bool:
    return bool(recorded) and Path(recorded).resolve() == Path(run).resolve()


def thumbs(records: list[dict]) -> dict[str, dict]:
    """Per served agent (``model``): thumbs up, down and the share up (the A/B split's first read-out)."""
    out: dict[str, dict] = {}
    for r in records:
        t = out.setdefault(r["model"], {"up": 0, "down": 0})
        t[r["rating"]] += 1
    for t in out.values():
        t["up_share"] = round(t["up"] / (t["up"] + t["down"]), 4)
    return out


def select(path: Path, run: Path, model: str | None = None) -> tuple[list[dict], dict]:
    """RUN's records of the store (latest per response id) and counts; one line if none is RUN's.

    RUN's records are those whose recorded run path is RUN, or, given ``model``, those served under that
    model name (the store came from another machine, or the run moved)."""
    latest: dict[str, dict] = {}
    for _, row in load_feedback(path):
        latest[row["id"]] = row  # rated twice: the latest record counts
    records = list(latest.values())
    ours = (lambda r: r["model"] == model) if model else (lambda r: _same_run(r.get("run"), run))
    mine = [r for r in records if ours(r)]
    others: dict[str, int] = {}
    for r in records:
        if not ours(r):
            others[r["model"]] = others.get(r["model"], 0) + 1
    if not mine:
        seen = ", ".join(f"{m} ({n})" for m, n in sorted(others.items()))
        wanted = f"model '{model}'" if model else f"{run}'s replies"
        raise UserError(f"{path}: no feedback about {wanted} (the records are about: {seen}); give the run that "
                        f"served them, or --feedback-model NAME")
    return mine, {"records": len(records), "skipped_other_agents": others, "thumbs": thumbs(records)}


def feedback_rows(records: list[dict], source, shape: str = "pairs") -> tuple[list[dict], int]:
    """Preference rows (module docstring) from RUN's records; and how many records gave none."""
    from supporttune.serve.respond import live_example  # THE live example: what serve rendered

    chat = source.spec.prompt_format == "chat"
    agent = SimpleNamespace(sentiment=source.spec.sentiment)
    wrap = (lambda t: [{"role": "assistant", "content": t}]) if chat else (lambda t: " " + t)
    rows, unused = [], 0
    for r in records:
        example = live_example(agent, r["message"], r.get("brand"), r.get("history"), r.get("instructions"))
        prompt = source.builder.messages(example) if chat else source.builder.text(example)
        reply, correction = r["reply"].strip(), (r.get("correction") or "").strip()
        correction = correction if correction != reply else ""  # "corrected" to itself: no preference
        base = {"feedback_id": r["id"], "model": r["model"], "rating": r["rating"], "example": example, "prompt": prompt}
        if shape == "pairs":
            if correction:
                rows.append({**base, "chosen": wrap(correction), "rejected": wrap(reply)})
            else:
                unused += 1
            continue
        if correction:
            rows.append({**base, "completion": wrap(correction), "label": True})
        rows.append({**base, "completion": wrap(reply), "label": r["rating"] == "up"})
    return rows, unused


def export_feedback(cfg: PairsConfig) -> dict:
    """Write RUN's feedback as preference rows to ``cfg.out``; returns counts (what the CLI prints)."""
    from supporttune.pairs.auto import check_out
    from supporttune.rate.export import PromptSource

    read_record(cfg.run)  # a finished run: `train --from RUN` will need its adapter
    check_out(cfg)
    records, counts = select(cfg.feedback, cfg.run, cfg.feedback_model)
    source = PromptSource.from_run(cfg.run)
    rows, unused = feedback_rows(records, source, cfg.shape)
    if not rows:
        raise UserError(f"{cfg.feedback}: none of {len(records)} records about {cfg.run} has a correction, so there "
                        f"is no pair; --shape kto uses thumbs up/down without one")
    write_jsonl(cfg.out, rows)
    return {**counts, "used": len(records) - unused, "without_correction": unused, "rows": len(rows),
            "shape": cfg.shape, "prompt": source.name, "out": str(cfg.out)}
