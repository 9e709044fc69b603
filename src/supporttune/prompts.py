"""THE prompt builder. Training, evaluation, chat and serve all call ``encode_prompt``.

Two formats:
  * ``chat``: the model's own chat template; the system turn names the brand and carries the
    tagging engine's ``[PRIORITY: ...] [SENTIMENT: ...] [CATEGORY: ...]``; the user turn is the
    customer message; the reply follows the assistant header.
  * ``plain``: the seed system's ``Customer message: {input}\\nAgent response: {output}``, with the
    tags prefixed.

The prompt and the reply are tokenized separately and concatenated, so the token ids the model
sees before the reply are exactly the ids ``encode_prompt`` gives at inference time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

PromptFormat = Literal["chat", "plain"]
SYSTEM = "You are a helpful customer support agent{brand}. Reply to the customer briefly, politely and helpfully."
PLAIN = "Customer message: {input}\nAgent response:"


@dataclass(frozen=True)
class PromptSpec:
    format: PromptFormat = "chat"
    tags: bool = True


def tag_line(example: dict) -> str:
    return (f"[PRIORITY: {example.get('priority', 'low').upper()}] "
            f"[SENTIMENT: {example.get('sentiment', 'neutral').upper()}] "
            f"[CATEGORY: {example.get('category', 'other').upper()}]")


def prompt_text(tokenizer, example: dict, spec: PromptSpec, shots: list[dict] | None = None) -> str:
    """The text that precedes the agent's reply for one customer message.

    ``shots`` (the few-shot baseline) are earlier exchanges shown before the message.
    """
    brand = example.get("brand") or ""
    shots = shots or []
    if spec.format == "chat" and getattr(tokenizer, "chat_template", None):
        system = SYSTEM.format(brand=f" for {brand}" if brand else "")
        if spec.tags:
            system += " " + tag_line(example)
        messages = [{"role": "system", "content": system}]
        for s in shots:
            messages += [{"role": "user", "content": s["input"]}, {"role": "assistant", "content": s["output"]}]
        messages.append({"role": "user", "content": example["input"]})
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    if spec.format == "chat":
        raise ValueError("prompt format 'chat' needs a tokenizer with a chat template; use --prompt-format plain")
    head = (tag_line(example) + " ") if spec.tags else ""
    if brand:
        head += f"[BRAND: {brand}] "
    context = "".join(PLAIN.format(input=s["input"]) + " " + s["output"] + "\n\n" for s in shots)
    return head + context + PLAIN.format(input=example["input"])


def encode_prompt(tokenizer, example: dict, spec: PromptSpec, shots: list[dict] | None = None) -> list[int]:
    text = prompt_text(tokenizer, example, spec, shots)
    # Chat templates write their own special tokens; the plain format gets the tokenizer's BOS.
    return tokenizer(text, add_special_tokens=spec.format == "plain")["input_ids"]


def encode_reply(tokenizer, reply: str, spec: PromptSpec) -> list[int]:
    """Reply ids + EOS, so generation learns to stop."""
    text = reply if spec.format == "chat" else " " + reply
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
