"""THE prompt builder. Training, evaluation, chat, serve and the rating export all call it.

Two formats:
  * ``chat``: the model's own chat template. The system turn names the brand, carries the tagging
    engine's ``[PRIORITY: ...] [SENTIMENT: ...] [CATEGORY: ...]`` and, with ``retrieve > 0``, the
    replies this team gave to the most similar past messages; up to ``history`` earlier turns of
    the conversation follow as chat turns; then the customer message and the assistant header.
  * ``plain``: the seed system's ``Customer message: {input}\\nAgent response: {output}``, with the
    tags, the retrieved examples and the history as earlier exchanges in the same format.

What the builder renders comes from the example itself: ``example["exemplars"]`` (attached by
``PromptBuilder`` from the run's exemplar index), ``example["history"]`` (earlier turns, kept by
``prepare``; a live conversation's earlier messages in chat/serve) and ``example["shots"]`` (the
few-shot baseline's earlier exchanges). The spec says how many exemplars and turns to show, so one
spec read from the run directory reproduces the training prompt. ``PromptBuilder`` is the one
"prompt for this example" entry point of training batches, the agent, the baselines and the rating
export: it attaches the exemplars and then renders.
Long exemplars and history turns are cut to ``context_tokens`` tokens each; the customer's own
message is never cut.

The prompt and the reply are tokenized separately and concatenated, so the token ids the model
sees before the reply are exactly the ids ``encode_prompt`` gives at inference time.
"""

from __future__ import annotations

from dataclasses import dataclass

from .retrieval import ExemplarIndex, attach_exemplars
from .spec import PromptSpec

SYSTEM = "You are a helpful customer support agent{brand}. Reply to the customer briefly, politely and helpfully."
EXEMPLARS_HEAD = "Replies this team gave to similar messages (use them when they fit, ignore them when they do not):"
PLAIN = "Customer message: {input}\nAgent response:"


def tag_line(example: dict) -> str:
    return (f"[PRIORITY: {example.get('priority', 'low').upper()}] "
            f"[SENTIMENT: {example.get('sentiment', 'neutral').upper()}] "
            f"[CATEGORY: {example.get('category', 'other').upper()}]")


def _cut(tokenizer, text: str, limit: int) -> str:
    """``text`` cut to ``limit`` tokens (whole tokens, so no broken characters at the end); no tokenizer, no cut."""
    if tokenizer is None:
        return text
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) <= limit:
        return text
    return tokenizer.decode(ids[:limit], skip_special_tokens=True).rstrip() + " ..."


def _exemplars(tokenizer, example: dict, spec: PromptSpec) -> list[dict]:
    if spec.retrieve <= 0:
        return []
    return [{"input": _cut(tokenizer, e["input"], spec.context_tokens), "output": _cut(tokenizer, e["output"], spec.context_tokens)}
            for e in (example.get("exemplars") or [])[: spec.retrieve]]


def _history(tokenizer, example: dict, spec: PromptSpec) -> list[dict]:
    if spec.history <= 0:
        return []
    turns = (example.get("history") or [])[-spec.history:]
    return [{"role": "assistant" if t["role"] == "assistant" else "user",
             "content": _cut(tokenizer, t["content"], spec.context_tokens)} for t in turns if t.get("content")]


def chat_messages(tokenizer, example: dict, spec: PromptSpec) -> list[dict]:
    """The conversation the model sees before the reply, as chat messages (chat format)."""
    brand = example.get("brand") or ""
    system = SYSTEM.format(brand=f" for {brand}" if brand else "")
    if spec.tags:
        system += " " + tag_line(example)
    exemplars = _exemplars(tokenizer, example, spec)
    if exemplars:
        system += "\n\n" + EXEMPLARS_HEAD + "".join(
            f"\n{i}. Customer: {e['input']}\n   Agent: {e['output']}" for i, e in enumerate(exemplars, 1))
    if example.get("instructions"):  # a live client's own system message (serve), after what the agent was trained with
        system += "\n\n" + example["instructions"]
    messages = [{"role": "system", "content": system}]
    for s in example.get("shots") or []:
        messages += [{"role": "user", "content": s["input"]}, {"role": "assistant", "content": s["output"]}]
    messages += _history(tokenizer, example, spec)
    messages.append({"role": "user", "content": example["input"]})
    return messages


def prompt_text(tokenizer, example: dict, spec: PromptSpec) -> str:
    """The text that precedes the agent's reply for one customer message (``shots`` first, if any)."""
    if spec.prompt_format == "chat" and getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(chat_messages(tokenizer, example, spec), tokenize=False,
                                             add_generation_prompt=True)
    if spec.prompt_format == "chat":
        raise ValueError("prompt format 'chat' needs a tokenizer with a chat template; use --prompt-format plain")
    brand = example.get("brand") or ""
    head = (tag_line(example) + " ") if spec.tags else ""
    if example.get("instructions"):
        head = example["instructions"] + "\n" + head
    if brand:
        head += f"[BRAND: {brand}] "
    earlier = list(example.get("shots") or []) + _exemplars(tokenizer, example, spec)
    context = "".join(PLAIN.format(input=s["input"]) + " " + s["output"] + "\n\n" for s in earlier)
    for t in _history(tokenizer, example, spec):
        context += (f"Agent response: {t['content']}\n" if t["role"] == "assistant" else f"Customer message: {t['content']}\n")
    return head + context + PLAIN.format(input=example["input"])


def encode_prompt(tokenizer, example: dict, spec: PromptSpec) -> list[int]:
    text = prompt_text(tokenizer, example, spec)
    # Chat templates write their own special tokens; the plain format gets the tokenizer's BOS.
    return tokenizer(text, add_special_tokens=spec.prompt_format == "plain")["input_ids"]


def encode_reply(tokenizer, reply: str, spec: PromptSpec) -> list[int]:
    """Reply ids + EOS, so generation learns to stop."""
    text = reply if spec.prompt_format == "chat" else " " + reply
    return tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]


def encode_example(tokenizer, example: dict, spec: PromptSpec, max_length: int) -> dict | None:
    """input_ids + labels with the prompt masked (-100): loss on the agent's reply only.

    Returns None when prompt + reply do not fit ``max_length`` (counted by the caller).
    """
    prompt = encode_prompt(tokenizer, example, spec)
    reply = encode_reply(tokenizer, example["output"], spec)
    if len(prompt) + len(reply) > max_length:
        return None
    return {"input_ids": prompt + reply, "labels": [-100] * len(prompt) + reply}


@dataclass
class PromptBuilder:
    """The prompt for an example, as every stage builds it: exemplars attached, then rendered by the spec.

    ``index`` is the run's exemplar index (None: the prompt shows no retrieved replies).
    """

    tokenizer: object
    spec: PromptSpec
    index: ExemplarIndex | None = None

    def with_context(self, examples: list[dict], distract_share: float = 0.0, seed: int = 0) -> list[dict]:
        """Copies with the ``spec.retrieve`` nearest past exchanges attached (RAFT distractors in training)."""
        return attach_exemplars(examples, self.index, self.spec.retrieve, distract_share, seed)

    def messages(self, example: dict) -> list[dict]:
        return chat_messages(self.tokenizer, self.with_context([example])[0], self.spec)

    def text(self, example: dict) -> str:
        return prompt_text(self.tokenizer, self.with_context([example])[0], self.spec)

    def ids(self, example: dict) -> list[int]:
        return encode_prompt(self.tokenizer, self.with_context([example])[0], self.spec)

    def training_items(self, rows: list[dict], max_length: int, distract_share: float = 0.0,
                       seed: int = 0) -> tuple[list[dict], int]:
        """Encoded (input_ids, labels) items of the rows that fit ``max_length``, and how many did not."""
        items, skipped = [], 0
        for row in self.with_context(rows, distract_share, seed):
            enc = encode_example(self.tokenizer, row, self.spec, max_length)
            if enc is None:
                skipped += 1
            else:
                items.append(enc)
        return items, skipped
