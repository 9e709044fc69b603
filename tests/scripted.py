"""A tiny agent that says a fixed text: readable replies for the serve tests (streams, stop strings, cut characters).

The random tiny model only ever emits newlines; here its base model's last logits are overwritten
so greedy decoding spells ``text`` token by token (then EOS), optionally sleeping per step.
"""

from __future__ import annotations

import time

SCRIPT = "Sorry for the wait! Your parcel ships today \U0001F9A9 tracking follows by e-mail."


def make_scripted(agent, text: str = SCRIPT, delay_s: float = 0.0) -> list[int]:
    """Patch ``agent`` in place; returns the token ids it will say (EOS last)."""
    ids = agent.tokenizer(text, add_special_tokens=False)["input_ids"] + [agent.tokenizer.eos_token_id]
    base = agent.model.get_base_model()
    original = base.forward
    step = [0]

    def forward(*args, **kwargs):
        out = original(*args, **kwargs)
        inputs = kwargs.get("input_ids") if kwargs.get("input_ids") is not None else kwargs.get("inputs_embeds")
        if inputs is not None and inputs.shape[1] > 1:  # a prefill: a new reply starts
            step[0] = 0
        token = ids[min(step[0], len(ids) - 1)]
        step[0] += 1
        out.logits[:, -1, :] = -1e4
        out.logits[:, -1, token] = 1e4
        if delay_s:
            time.sleep(delay_s)
        return out

    base.forward = forward
    return ids


def scripted_agent(run_dir):
    """A trained tiny run loaded on the CPU and made to say SCRIPT (the serve tests' shared agent)."""
    from supporttune.inference.agent import load_agent

    agent = load_agent(run_dir, device="cpu")
    make_scripted(agent)
    return agent
