"""Generated replies on disk before any scoring: ``eval/predictions.partial.jsonl``.

Evaluation appends each batch's replies as it is made (one JSON line per example, with everything
scoring needs: the example's fields, the reply, its token count), after a header line holding the
key of what decides the replies (the run's config hash or the baseline, data, split, example ids,
decoding, device). A rerun with the same key resumes from the file: only missing examples are
generated. A different key starts over. The file is removed once predictions.jsonl and
metrics.json are written; until then ``evaluate.rescore`` can score from it alone.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..core.io import sha256_json
from ..inference.decode import Generated
from ..suitedir import PARTIAL

FIELDS = ("id", "thread_id", "brand", "input", "category", "sentiment", "priority")


def reply_row(example: dict, g: Generated) -> dict:
    """One prediction line without scores (the scored line adds ``scores``)."""
    return {**{k: example.get(k, "") for k in FIELDS}, "reference": example["output"], "prediction": g.text,
            "new_tokens": g.new_tokens, "hit_max": g.hit_max, "latency_s": g.latency_s}


def replies_key(entry: dict, data: str, split: str, examples: list[dict], decoding: dict, device: str) -> str:
    return sha256_json({"entry": entry, "data": data, "split": split, "ids": [e.get("id") for e in examples],
                        "decoding": decoding, "device": device})[:16]


class ReplyLog:
    def __init__(self, eval_dir: Path, key: str):
        self.path, self.key = Path(eval_dir) / PARTIAL, key

    def load(self, examples: list[dict]) -> dict[int, Generated]:
        """Replies already on disk for this key, by example position ({} for another key or no file)."""
        if not self.path.is_file():
            return {}
        lines = self.path.read_text().splitlines()
        try:
            header = json.loads(lines[0]) if lines else {}
        except json.JSONDecodeError:
            header = {}
        if header.get("key") != self.key:
            return {}
        position = {e.get("id"): i for i, e in enumerate(examples)}
        done: dict[int, Generated] = {}
        for line in lines[1:]:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:  # a line cut short by a crash: regenerate that example
                continue
            if row.get("id") in position:
                done[position[row["id"]]] = Generated(row["prediction"], row["new_tokens"], row["hit_max"], row.get("latency_s"))
        return done

    def start(self, resumed: bool) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not resumed:
            self.path.write_text(json.dumps({"partial_of": "supporttune evaluate", "key": self.key}) + "\n")

    def append(self, examples: list[dict], gens: list[Generated]) -> None:
        with self.path.open("a") as f:
            for ex, g in zip(examples, gens):
                f.write(json.dumps(reply_row(ex, g), ensure_ascii=False) + "\n")
            f.flush()

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def read_partial(eval_dir: Path) -> list[dict]:
    """The reply rows of a partial file (no header), for scoring from it alone."""
    lines = (Path(eval_dir) / PARTIAL).read_text().splitlines()[1:]
    rows = []
    for line in lines:
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return rows
