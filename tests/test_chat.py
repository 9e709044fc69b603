"""`supporttune chat`: piped lines are tagged and answered one per line."""

import io

from supporttune.serve.chat import chat_loop
from supporttune.inference.agent import load_agent


def test_chat_answers_piped_lines_with_tags(tiny_run):
    agent = load_agent(tiny_run, device="cpu")
    out = io.StringIO()
    n = chat_loop(agent, "ParcelPal", stdin=io.StringIO("Where is my parcel?\n\nI want a refund!!\n"), stdout=out,
                  max_new_tokens=4)
    lines = out.getvalue().splitlines()
    assert n == 2 and len(lines) == 2
    assert lines[0].startswith("[neutral | low priority | question]\t")
    assert lines[1].startswith("[") and "complaint]" in lines[1]
