"""`supporttune chat RUNDIR`: talk to a trained agent in the terminal (or pipe messages through it).

In a terminal, input goes through the standard library's ``readline`` (arrow keys, history across
the session), Ctrl-C cancels the reply being generated and Ctrl-D (or an empty line) ends the chat.
"""

from __future__ import annotations

import sys
from typing import TextIO

from ..inference.agent import Agent
from ..inference.mbr import DecodeSpec
from .respond import respond_batch


def _line_editor(stdin: TextIO, stdout: TextIO):
    """A function reading one line with line editing when both ends are the terminal, else plain readline."""
    if stdin is sys.stdin and stdout is sys.stdout and stdin.isatty():
        try:
            import readline  # noqa: F401  (importing it is what makes input() edit lines and keep history)
        except ImportError:  # not on every platform
            pass

        def read(prompt: str) -> str:
            try:
                return input(prompt) + "\n"
            except EOFError:
                return ""

        return read

    def read_plain(prompt: str) -> str:
        if prompt:
            stdout.write(prompt)
            stdout.flush()
        return stdin.readline()

    return read_plain


def chat_loop(agent: Agent, brand: str | None, stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout,
              max_new_tokens: int = 64, temperature: float = 0.0, decode: DecodeSpec | None = None) -> int:
    """One reply per input line. Interactive terminals get a prompt and the tags; pipes get plain lines.

    ``decode``: the strategy (greedy, sample, beam, mbr); ``temperature`` > 0 samples regardless.

    Returns the number of messages answered.
    """
    interactive = stdin.isatty()
    read = _line_editor(stdin, stdout)
    if interactive:
        stdout.write(f"supporttune chat with {agent.name}{' for ' + brand if brand else ''}. "
                     f"Ctrl-C cancels a reply; an empty line or Ctrl-D ends.\n")
    strategy = {"decode": decode} if decode is not None and decode.strategy != "greedy" else {}  # greedy: as ever
    n = 0
    history: list[dict] = []  # an interactive chat is one conversation; piped lines are independent messages
    while True:
        try:
            line = read("customer> " if interactive else "")
        except KeyboardInterrupt:  # at the prompt: end the chat as Ctrl-D would
            stdout.write("\n")
            break
        if not line or (interactive and not line.strip()):
            break
        message = line.strip()
        if not message:
            continue
        try:
            r = respond_batch(agent, [(message, brand, history)], max_new_tokens, temperature, **strategy)[0]
        except KeyboardInterrupt:
            if not interactive:
                raise
            stdout.write("\n(reply cancelled; the message is not part of the conversation)\n")
            stdout.flush()
            continue
        if interactive:
            history += [{"role": "user", "content": message}, {"role": "assistant", "content": r.reply}]
        tags = f"[{r.sentiment} | {r.priority} priority | {r.category}]"
        stdout.write(f"{tags}\nagent> {r.reply}\n" if interactive else f"{tags}\t{r.reply}\n")
        stdout.flush()
        n += 1
    return n
