"""``supporttune rate SUITE --export-preferences FILE.jsonl``: decided votes as TRL preference pairs.

Each line is TRL's conversational preference format (what ``DPOTrainer`` and the other preference
trainers read)::

    {"prompt": [{"role": "system", ...}, {"role": "user", ...}],
     "chosen": [{"role": "assistant", "content": ...}], "rejected": [{"role": "assistant", ...}]}

The prompt comes from THE prompt builder (``prompts.chat_messages``), so a preference round
trains on the conversation the agent sees in training, evaluation and serving. By default that
is the standard chat prompt (brand and tags; needs no model). ``--prompt-from RUN`` uses a run's
own prompt instead, read from its record: thread history, retrieved examples from its exemplar
index, cut with its base tokenizer; a run trained with the ``plain`` format gets TRL's standard
(string) preference format, the reply with the leading space training gives it.
Only "A better" / "B better" votes become pairs (a tie or "both bad" prefers nothing); a pair
rated by two raters appears once per vote. Every row also carries the message ``id``, which
``train --objective`` uses to find the example (and rebuild the prompt exactly as the run does).

``--export-shape kto`` writes TRL's unpaired shape ``{prompt, completion, label}`` instead, one row
per reply of a decided vote: a reply the rater flagged (wrong info, rude, off-topic, unsafe) is
undesirable, as is the loser of an A/B vote and both replies of "both bad"; the unflagged winner is
desirable; an unflagged reply of a tie says nothing and is left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..core.io import write_jsonl
from ..prompting.builder import PromptBuilder
from ..prompting.spec import PromptSpec
from .replies import SuiteReplies


@dataclass
class PromptSource:
    """What builds the prompts: a spec, the tokenizer it cuts with (None: nothing to cut), an exemplar index."""

    spec: PromptSpec = PromptSpec(history=0)  # no tokenizer to cut earlier turns with
    tokenizer: object = None
    index: object = None
    name: str = "the default chat prompt (brand and tags)"

    @classmethod
    def from_run(cls, run_dir: Path) -> "PromptSource":
        from ..models.loading import load_tokenizer
        from ..rundir import exemplar_index, read_record

        record = read_record(run_dir, finished=False)
        spec = record.spec
        return cls(spec, load_tokenizer(record.model_ref), exemplar_index(run_dir, spec),
                   f"the prompt of {record.variant} ({run_dir})")

    @property
    def builder(self) -> PromptBuilder:
        return PromptBuilder(self.tokenizer, self.spec, self.index)


def preference_rows(suite: SuiteReplies, votes: list[dict], source: PromptSource | None = None) -> list[dict]:
    source = source or PromptSource()
    chat = source.spec.prompt_format == "chat"
    rows = []
    for v in votes:
        if v.get("choice") not in ("left", "right"):
            continue
        winner, loser = (v["left"], v["right"]) if v["choice"] == "left" else (v["right"], v["left"])
        mid = str(v["message_id"])
        message = suite.messages.get(mid)
        if message is None or mid not in suite.replies.get(winner, {}) or mid not in suite.replies.get(loser, {}):
            continue  # the suite changed since the vote: that reply is gone
        good, bad = suite.replies[winner][mid], suite.replies[loser][mid]
        if chat:
            rows.append({"id": mid, "prompt": source.builder.messages(message),
                         "chosen": [{"role": "assistant", "content": good}], "rejected": [{"role": "assistant", "content": bad}]})
        else:
            rows.append({"id": mid, "prompt": source.builder.text(message), "chosen": " " + good,
                         "rejected": " " + bad})
    return rows


def kto_rows(suite: SuiteReplies, votes: list[dict], source: PromptSource | None = None) -> list[dict]:
    """TRL's unpaired preference rows from decided votes: flagged replies and losers undesirable (module docstring)."""
    source = source or PromptSource()
    chat = source.spec.prompt_format == "chat"
    rows = []
    for v in votes:
        choice, mid = v.get("choice"), str(v["message_id"])
        message = suite.messages.get(mid)
        if choice not in ("left", "right", "tie", "both_bad") or message is None:
            continue
        flags = v.get("flags") or {}
        for side in ("left", "right"):
            reply = suite.replies.get(v[side], {}).get(mid)
            if reply is None:
                continue  # the suite changed since the vote
            if flags.get(side) or choice == "both_bad" or choice not in (side, "tie"):
                label = False
            elif choice == side:
                label = True
            else:
                continue  # an unflagged reply of a tie
            prompt = source.builder.messages(message) if chat else source.builder.text(message)
            completion = [{"role": "assistant", "content": reply}] if chat else " " + reply
            rows.append({"id": mid, "prompt": prompt, "completion": completion, "label": label})
    return rows


def export_preferences(suite: SuiteReplies, votes: list[dict], out: Path, source: PromptSource | None = None,
                       shape: str = "pairs") -> int:
    """Write the preference pairs (``shape="kto"``: unpaired rows) to ``out`` (atomically); returns how many."""
    make = kto_rows if shape == "kto" else preference_rows
    return write_jsonl(Path(out), make(suite, votes, source))
