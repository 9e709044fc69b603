"""``supporttune rate SUITE --export-preferences FILE.jsonl``: decided votes as TRL preference pairs.

Each line is TRL's conversational preference format (what ``DPOTrainer`` and the other preference
trainers read)::

    {"prompt": [{"role": "system", ...}, {"role": "user", ...}],
     "chosen": [{"role": "assistant", "content": ...}], "rejected": [{"role": "assistant", ...}]}

The prompt messages come from THE prompt builder (``prompts.prompt_text``), so a preference
round trains on exactly the conversation the agent sees in training, evaluation and serving:
``_Recorder`` stands in for a tokenizer and hands back the message list the builder would pass
to the chat template, instead of rendering it. Only "A better" / "B better" votes become pairs
(a tie or "both bad" prefers nothing); a pair rated by two raters appears once per vote.
"""

from __future__ import annotations

from pathlib import Path

from ..io import write_jsonl
from ..prompts import PromptSpec, prompt_text
from .replies import SuiteReplies


class _Recorder:
    """A tokenizer stand-in whose chat template returns the messages unrendered."""

    chat_template = "supporttune: record messages"

    def apply_chat_template(self, messages, **_kwargs):
        return [dict(m) for m in messages]


def prompt_messages(message: dict, spec: PromptSpec = PromptSpec()) -> list[dict]:
    """The chat messages the prompt builder makes for one held-out message (system + turns)."""
    return prompt_text(_Recorder(), message, PromptSpec("chat", spec.tags))


def preference_rows(suite: SuiteReplies, votes: list[dict], spec: PromptSpec = PromptSpec()) -> list[dict]:
    rows = []
    for v in votes:
        if v.get("choice") not in ("left", "right"):
            continue
        winner, loser = (v["left"], v["right"]) if v["choice"] == "left" else (v["right"], v["left"])
        mid = str(v["message_id"])
        message = suite.messages.get(mid)
        if message is None or mid not in suite.replies.get(winner, {}) or mid not in suite.replies.get(loser, {}):
            continue  # the suite changed since the vote: that reply is gone
        rows.append({"prompt": prompt_messages(message, spec),
                     "chosen": [{"role": "assistant", "content": suite.replies[winner][mid]}],
                     "rejected": [{"role": "assistant", "content": suite.replies[loser][mid]}]})
    return rows


def export_preferences(suite: SuiteReplies, votes: list[dict], out: Path, spec: PromptSpec = PromptSpec()) -> int:
    """Write the preference pairs to ``out`` (atomically); returns how many."""
    return write_jsonl(Path(out), preference_rows(suite, votes, spec))
