"""Honest baselines, scored by the same evaluation code as the trained variants.

* ``zero-shot``: the untuned base model with the very same prompt.
* ``few-shot``: the base model with the k most similar training exchanges in the prompt.
* ``retrieval``: the reply of the most similar training input (retrieval.ExemplarIndex, the variants'
  scorer; same brand first).
* ``constant``: the single most common training reply, for every message.
"""

from __future__ import annotations

from collections import Counter


def constant_reply(train_rows: list[dict]) -> str:
    """The most common training reply (ties broken by first appearance)."""
    counts = Counter(r["output"] for r in train_rows)
    return counts.most_common(1)[0][0]
