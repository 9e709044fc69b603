"""Which agent answers a request: the one its ``model`` names, else the A/B split, else the first.

``--split a=90,b=10`` sends requests that name no model to ``a`` 90% of the time and ``b`` 10% (the
shares are weights: they need not add up to 100); each response names the agent that answered.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Served:
    """One agent of the server and what answers for it (a LocalDriver or a BackendDriver)."""

    name: str
    agent: object
    driver: object
    run: str | None = None


def agent_names(runs: list[Path], variants: list[str]) -> list[str]:
    """Variant names, made unique: a shared variant name becomes the run directory's name (then -2, -3, ...)."""
    names = [v if variants.count(v) == 1 else Path(r).resolve().name for r, v in zip(runs, variants)]
    out: list[str] = []
    for n in names:
        k, name = 1, n
        while name in out:
            k += 1
            name = f"{n}-{k}"
        out.append(name)
    return out


def parse_split(text: str | None, names: list[str]) -> dict[str, float]:
    """``"a=90,b=10"`` -> ``{"a": 90.0, "b": 10.0}``; ValueError (one line) for names not served or bad shares."""
    if not text:
        return {}
    out: dict[str, float] = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        name, sep, share = part.rpartition("=")
        if not sep or not name:
            raise ValueError(f"--split: '{part}' is not NAME=SHARE (e.g. --split a=90,b=10)")
        if name not in names:
            raise ValueError(f"--split: no agent named '{name}' (serving: {', '.join(names)})")
        try:
            out[name] = float(share)
        except ValueError:
            raise ValueError(f"--split: the share of '{name}' is not a number: '{share}'") from None
        if out[name] < 0:
            raise ValueError(f"--split: the share of '{name}' is negative")
    if sum(out.values()) <= 0:
        raise ValueError("--split: the shares add up to 0")
    return out


class Router:
    def __init__(self, served: list[Served], split: dict[str, float] | None = None, seed: int | None = None):
        names = [s.name for s in served]
        if not served:
            raise ValueError("no agent to serve")
        if len(set(names)) != len(names):
            raise ValueError(f"two agents share a name: {', '.join(names)}")
        self.served = {s.name: s for s in served}
        self.default = served[0]
        self.split = dict(split or {})
        self._rng = random.Random(seed)

    def names(self) -> list[str]:
        return list(self.served)

    def pick(self, model: str | None) -> Served | None:
        """The agent for a request's ``model`` (None: not served)."""
        if model:
            return self.served.get(model)
        if self.split:
            names = list(self.split)
            return self.served[self._rng.choices(names, weights=[self.split[n] for n in names])[0]]
        return self.default
