"""`supporttune chat RUNDIR`: talk to a trained agent in the terminal (or pipe messages through it)."""

from __future__ import annotations

import sys
from typing import TextIO

from .generate import Agent
from .respond import respond_batch


def chat_loop(agent: Agent, brand: str | None, stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout,
              max_new_tokens: int = 64) -> int:
    """One reply per input line. Interactive terminals get a prompt and the tags; pipes get plain lines.

    Returns the number of messages answered.
    """
    interactive = stdin.isatty()
    if interactive:
        stdout.write(f"supporttune chat with {agent.name}{' for ' + brand if brand else ''}. Empty line or Ctrl-D ends.\n")
    n = 0
    history: list[dict] = []  # an interactive chat is one conversation; piped lines are independent messages
    while True:
        if interactive:
            stdout.write("customer> ")
            stdout.flush()
        line = stdin.readline()
        if not line or (interactive and not line.strip()):
            break
        message = line.strip()
        if not message:
            continue
        r = respond_batch(agent, [(message, brand, history)], max_new_tokens)[0]
        if interactive:
            history += [{"role": "user", "content": message}, {"role": "assistant", "content": r.reply}]
        tags = f"[{r.sentiment} | {r.priority} priority | {r.category}]"
        stdout.write(f"{tags}\nagent> {r.reply}\n" if interactive else f"{tags}\t{r.reply}\n")
        stdout.flush()
        n += 1
    return n
