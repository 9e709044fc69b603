"""Preference files for ``--objective dpo|kto|orpo``: read, check against the parent run, encode.

Why we encode and not TRL: TRL tokenizes its own way (the chat template on a message list, the reply
found by diffing prompt and prompt+reply, the template's end-of-turn instead of EOS), which is not
the token sequence our agent sees. So each row is mapped back to its example of the run's data (by
``id``, else by the customer message of its prompt), the prompt is rebuilt by THE prompt builder
with the parent run's spec and exemplar index (the very ids ``Agent.prompt_ids`` gives at
inference), and each reply is encoded as SFT encodes it (``encode_reply``: reply + EOS). TRL then
gets ready ids (``prompt_ids``/``chosen_ids``/``rejected_ids``, KTO ``completion_ids``/``label``).

Rows accepted (one JSON object a line):
  * pairs (dpo, orpo, kto): ``{"prompt"|"messages"|"id", "chosen", "rejected"}``; prompt = chat messages
    (chat format) or text (plain format); a reply = text or ``[{"role": "assistant", ...}]``; TRL's
    implicit-prompt form (``chosen``/``rejected`` whole conversations) too;
  * unpaired (kto only): ``{"prompt"|"messages"|"id", "completion", "label": true|false}``;
  * a live message (``serve``'s feedback, exported by ``preferences --feedback``) is no example of the
    run's data: its row carries the example itself, ``"example": {"input", "history", "brand", tags ...}``
    (what serve rendered), and the prompt is rebuilt from it by the same builder (split ``live``).
Everything here but ``encode`` runs before any model loads: a bad file fails in one line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..core.errors import UserError
from ..core.io import read_jsonl
from ..data.split import load_split
from ..prompting.builder import PLAIN, PromptBuilder, encode_reply
from ..prompting.spec import PromptSpec

SPLITS = ("train", "val", "test")
LIVE = "live"  # rows that carry their own example (a served message), not one of the run's data


@dataclass
class PreferenceRow:
    """One line of a preference file, tied to its example of the run's data."""

    line: int
    example: dict
    split: str
    given_prompt: object  # the prompt as written in the file (None: given by id)
    chosen: str | None = None
    rejected: str | None = None
    completion: str | None = None
    label: bool | None = None


class Examples:
    """The run's prepared examples, found by id or by their customer message."""

    def __init__(self, data: Path):
        self.by_id: dict[str, tuple[dict, str]] = {}
        self.by_input: dict[str, tuple[dict, str]] = {}
        for split in SPLITS:
            for row in load_split(data, split, required=split == "train"):
                self.by_id.setdefault(str(row.get("id")), (row, split))
                self.by_input.setdefault(row["input"], (row, split))

    def from_plain(self, prompt: str) -> tuple[dict, str] | None:
        """The example whose plain prompt ``prompt`` ends with (the customer message is its last exchange)."""
        head, tail = PLAIN.split("{input}")
        if not prompt.endswith(tail):
            return None
        body = prompt[: len(prompt) - len(tail)]
        start = body.rfind(head)
        while start >= 0:  # the message itself may contain the header: try each one from the right
            found = self.by_input.get(body[start + len(head):])
            if found:
                return found
            start = body.rfind(head, 0, start)
        return None


def _reply(value, where: str, key: str) -> str:
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, list) and value and isinstance(value[-1], dict) and value[-1].get("role") == "assistant":
        return str(value[-1].get("content") or "").strip()
    raise UserError(f"{where}: '{key}' must be text or a list of chat messages ending with the assistant's reply")


def _is_messages(value) -> bool:
    return isinstance(value, list) and all(isinstance(m, dict) and "role" in m and "content" in m for m in value)


def _live(example, where: str) -> dict:
    """A row's own example (a served message), checked as far as the prompt builder reads it."""
    history = example.get("history") if isinstance(example, dict) else None
    if not (isinstance(example, dict) and isinstance(example.get("input"), str) and example["input"].strip()):
        raise UserError(f"{where}: 'example' must be an object with the customer message as 'input'")
    if history is not None and not (isinstance(history, list) and all(_is_messages([t]) for t in history)):
        raise UserError(f"{where}: the example's 'history' must be a list of {{role, content}} turns")
    return dict(example)


def _locate(row: dict, where: str, spec: PromptSpec, examples: Examples, data: Path) -> tuple[dict, str, object]:
    """(example, split, the prompt as given) for a row, or one line saying why it is not from the run."""
    if row.get("example") is not None:
        return _live(row["example"], where), LIVE, row.get("prompt", row.get("messages"))
    if "id" in row and row["id"] is not None:
        found = examples.by_id.get(str(row["id"]))
        if found is None:
            raise UserError(f"{where}: id {row['id']!r} is not a message of {data} (train/val/test); the prompts "
                            f"must come from the run's data")
        return (*found, row.get("prompt", row.get("messages")))
    prompt = row.get("prompt", row.get("messages"))
    if prompt is None and _is_messages(row.get("chosen")) and len(row["chosen"]) > 1:
        prompt = row["chosen"][:-1]  # TRL's implicit prompt: the conversation before the last reply
    if prompt is None:
        raise UserError(f"{where}: needs a 'prompt' (or 'messages' or 'id')")
    chat = spec.prompt_format == "chat"
    if chat and not _is_messages(prompt):
        raise UserError(f"{where}: the prompt is text, but the run uses the chat prompt format (a list of "
                        f"messages; export votes with --prompt-from RUN)")
    if not chat and not isinstance(prompt, str):
        raise UserError(f"{where}: the prompt is a list of messages, but the run uses the plain prompt format "
                        f"(text; export votes with --prompt-from RUN)")
    if chat:
        users = [m["content"] for m in prompt if m["role"] == "user"]
        found = examples.by_input.get(users[-1]) if users else None
    else:
        found = examples.from_plain(prompt)
    if found is None:
        raise UserError(f"{where}: the prompt's customer message is not a message of {data}; the prompts must "
                        f"come from the run's data")
    return (*found, prompt)


def read_preferences(path: Path, objective: str, spec: PromptSpec, data: Path) -> list[PreferenceRow]:
    """Every row of a preference file, checked (fields, format, origin); one line on the first bad one."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path}: is a directory (give a JSONL preference file)")
    raw = read_jsonl(path)  # a missing file or bad JSON: one line from core.io
    if not raw:
        raise UserError(f"{path}: no preference rows (an empty file)")
    examples = Examples(data)
    rows = []
    for i, row in enumerate(raw, 1):
        where = f"{path}:{i}"
        if not isinstance(row, dict):
            raise UserError(f"{where}: not a JSON object")
        paired = "chosen" in row or "rejected" in row
        if paired and not ("chosen" in row and "rejected" in row):
            raise UserError(f"{where}: needs both 'chosen' and 'rejected'")
        unpaired = "completion" in row or "label" in row
        if unpaired and objective != "kto":
            raise UserError(f"{where}: an unpaired row ('completion', 'label') is KTO data; use --objective kto "
                            f"or pairs of 'chosen' and 'rejected'")
        if unpaired and not ("completion" in row and isinstance(row.get("label"), bool)):
            raise UserError(f"{where}: needs 'completion' and a true/false 'label'")
        if not paired and not unpaired:
            raise UserError(f"{where}: needs 'chosen' and 'rejected'"
                            f"{' (or kto: completion and label)' if objective == 'kto' else ''}")
        example, split, given = _locate(row, where, spec, examples, data)
        item = PreferenceRow(i, example, split, given)
        if paired:
            item.chosen, item.rejected = _reply(row["chosen"], where, "chosen"), _reply(row["rejected"], where, "rejected")
        else:
            item.completion, item.label = _reply(row["completion"], where, "completion"), row["label"]
        rows.append(item)
    return rows


def split_counts(rows: list[PreferenceRow]) -> dict[str, int]:
    """How many rows come from each split (test rows mean the child's test scores are not held out; live: served)."""
    return {s: sum(r.split == s for r in rows) for s in (*SPLITS, LIVE)}


@dataclass
class Encoded:
    items: list[dict]  # what TRL's collator takes
    skipped: int  # rows whose prompt + reply do not fit max_length
    rebuilt: int  # rows whose given prompt differs from the run's own rendering (the run's is used)


def encode(rows: list[PreferenceRow], builder: PromptBuilder, objective: str, max_length: int) -> Encoded:
    """Token ids of every row: the run's prompt for its example, replies as SFT encodes them."""
    tok, spec = builder.tokenizer, builder.spec
    items, skipped, rebuilt = [], 0, 0
    for row in rows:
        prompt = builder.ids(row.example)
        if row.given_prompt is not None:
            own = builder.messages(row.example) if spec.prompt_format == "chat" else builder.text(row.example)
            rebuilt += own != row.given_prompt
        if row.completion is not None:
            unpaired = [(row.completion, row.label)]
        elif objective == "kto":  # TRL's unpairing: chosen desirable, rejected undesirable
            unpaired = [(row.chosen, True), (row.rejected, False)]
        else:
            chosen, rejected = encode_reply(tok, row.chosen, spec), encode_reply(tok, row.rejected, spec)
            if len(prompt) + max(len(chosen), len(rejected)) > max_length:
                skipped += 1
                continue
            items.append({"prompt_ids": prompt, "chosen_ids": chosen, "rejected_ids": rejected})
            continue
        for text, label in unpaired:
            completion = encode_reply(tok, text, spec)
            if len(prompt) + len(completion) > max_length:
                skipped += 1
                continue
            items.append({"prompt_ids": prompt, "completion_ids": completion, "label": bool(label)})
    return Encoded(items, skipped, rebuilt)
