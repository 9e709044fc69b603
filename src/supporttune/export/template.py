"""The export's chat template: the agent's training prompt for a plain conversation, in Jinja.

An export is served by engines that never run supporttune (vLLM, TGI, llama.cpp, Ollama): they build the
prompt with the tokenizer's chat template. The base model's template would inject the base's default
system prompt ("You are a helpful AI assistant named SmolLM ..."), not the one the agent was trained and
measured with. ``agent_template`` puts a prefix in front of the base template that rewrites ``messages``
the way ``prompting/builder.py`` does for a conversation without retrieved replies:

* the system turn is the builder's ``SYSTEM`` with the brand, then (when the agent was trained with tags)
  the tag line; brand and tags come from template variables (``apply_chat_template(..., brand=...,
  priority=..., sentiment=..., category=...)``, vLLM's ``chat_template_kwargs``), else the export's
  default brand and the tagger's neutral values;
* a client's system message is appended after it, as ``supporttune serve`` does with ``instructions``;
* only the last ``history`` earlier turns are kept.

What a template cannot do stays with supporttune's builder (``serve --backend``): running the tagger on the
message, retrieving past replies, cutting long turns to ``context_tokens``. tests/test_export_deploy.py
checks that the template gives the same tokens as the agent's ``prompt_ids``.
"""

from __future__ import annotations

import json

from ..prompting.builder import SYSTEM
from ..prompting.builder import tag_line
from ..prompting.spec import PromptSpec


def _lit(text: str) -> str:
    """A Jinja string literal (JSON's double-quoted form is one)."""
    return json.dumps(text, ensure_ascii=False)


def _tag(name: str, default: str) -> str:
    return f"(({name} if {name} is defined and {name} else {_lit(default)}) | string | upper)"


def agent_template(base_template: str, spec: PromptSpec, brand: str | None = None) -> str:
    """``base_template`` with a prefix that renders the agent's system turn and history window."""
    head, tail = SYSTEM.split("{brand}")
    keep = spec.history + 1  # the earlier turns the builder shows, and the customer's message
    lines = [
        f"{{%- set st_brand = brand if brand is defined and brand else {_lit(brand or '')} -%}}",
        f"{{%- set st_system = {_lit(head)} + ((' for ' + st_brand) if st_brand else '') + {_lit(tail)} -%}}",
    ]
    if spec.tags:  # builder.tag_line, with its defaults for an untagged message
        lines.append("{%- set st_system = st_system + ' [PRIORITY: ' + " + _tag("priority", "low")
                     + " + '] [SENTIMENT: ' + " + _tag("sentiment", "neutral")
                     + " + '] [CATEGORY: ' + " + _tag("category", "other") + " + ']' -%}")
    lines += [
        "{%- if messages and messages[0]['role'] == 'system' and messages[0]['content'] -%}",
        "{%- set st_system = st_system + '\\n\\n' + messages[0]['content'] -%}",
        "{%- endif -%}",
        "{%- set st_turns = messages | rejectattr('role', 'equalto', 'system') | list -%}",
        f"{{%- set messages = [{{'role': 'system', 'content': st_system}}] + st_turns[-{keep}:] -%}}",
    ]
    return "\n".join(lines) + "\n" + base_template


def default_system(spec: PromptSpec, brand: str | None = None) -> str:
    """The system turn the template renders when given no variables (the Modelfile's SYSTEM)."""
    text = SYSTEM.format(brand=f" for {brand}" if brand else "")
    if spec.tags:
        text += " " + tag_line({})
    return text
