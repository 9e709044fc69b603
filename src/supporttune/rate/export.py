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
rated by two raters appears once per vote.
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
            rows.append({"prompt": source.builder.messages(message),
                         "chosen": [{"role": "assistant", "content": good}], "rejected": [{"role": "assistant", "content": bad}]})
        else:
            rows.append({"prompt": source.builder.text(message), "chosen": " " + good,
                         "rejected": " " + bad})
    return rows


def export_preferences(suite: SuiteReplies, votes: list[dict], out: Path, source: PromptSource | None = None) -> int:
    """Write the preference pairs to ``out`` (atomically); returns how many."""
    return write_jsonl(Path(out), preference_rows(suite, votes, source))
