"""Issue 21's finalists, scored here: seeded entries against each other and against the baselines (test split).

Each ``--entry NAME=DIR`` folder holds one run per seed (``*seedN/eval/predictions.jsonl``, as evaluate wrote
them on the device without semantic similarity); ``--baseline NAME=FILE`` is a baseline's predictions.jsonl.
Every prediction file is rescored with the project's metrics (semantic similarity included: MiniLM is here);
then each entry is paired, seed by seed, with the first entry (``--reference``, default: the first) and with
every baseline, with the report's paired bootstrap test. Writes numbers only.

    python tools/finalist_results.py --entry tuned=DIR/t32 --entry recipe=DIR/t0 \
        --baseline retrieval=B/retrieval/eval/predictions.jsonl --baseline constant=B/constant/eval/predictions.jsonl \
        --reference recipe --out docs/results/tune-gpu-finalists.json
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from dpo_results import _scored  # one rescoring routine for both tools

METRICS = ("rougeL", "bleu", "chrf", "semantic_sim")


def _pair(name, value: str) -> tuple[str, str]:
    if "=" not in value:
        raise SystemExit(f"finalist_results: {name} takes NAME=PATH (got {value!r})")
    return tuple(value.split("=", 1))


def _seeds(folder: Path) -> dict[int, Path]:
    found = {}
    for pred in sorted(folder.parent.glob(f"{folder.name}*seed*/eval/predictions.jsonl")):
        m = re.search(r"seed(\d+)$", pred.parent.parent.name)
        if m:
            found[int(m.group(1))] = pred
    if not found:
        raise SystemExit(f"finalist_results: no {folder}*seedN/eval/predictions.jsonl")
    return found


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--entry", action="append", required=True, help="NAME=DIR prefix of the seeded runs")
    p.add_argument("--baseline", action="append", default=[], help="NAME=predictions.jsonl")
    p.add_argument("--reference", help="entry the others are paired with (default: the first)")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    from supporttune.metrics.scores import select
    from supporttune.metrics.stats import paired_test

    keys = [m.key for m in select(test=True)]
    entries = {n: _seeds(Path(d)) for n, d in (_pair("--entry", e) for e in args.entry)}
    reference = args.reference or next(iter(entries))
    if reference not in entries:
        raise SystemExit(f"finalist_results: --reference {reference} is not an --entry")
    baselines = {n: _scored(Path(f)) for n, f in (_pair("--baseline", b) for b in args.baseline)}

    def test(a, b) -> dict:
        return {k: paired_test(k, [r["scores"].get(k) for r in a[0]], [r["scores"].get(k) for r in b[0]],
                               a[2], b[2], 1000) for k in keys}

    scored = {n: {s: _scored(f) for s, f in seeds.items()} for n, seeds in entries.items()}
    report = {"baselines": {n: {k: s[1].get(k) for k in METRICS} for n, s in baselines.items()}, "entries": {}}
    for name, seeds in scored.items():
        rows = {}
        for seed, s in seeds.items():
            row = {k: s[1].get(k) for k in METRICS}
            row["vs"] = {b: test(s, bs) for b, bs in baselines.items()}
            if name != reference and seed in scored[reference]:
                row["vs"][reference] = test(s, scored[reference][seed])
            rows[f"seed{seed}"] = row
            print(name, seed, json.dumps({k: row[k] for k in METRICS}), flush=True)
        means = {k: statistics.mean(r[k] for r in rows.values()) for k in METRICS}
        sds = {k: statistics.stdev(r[k] for r in rows.values()) if len(rows) > 1 else 0.0 for k in METRICS}
        report["entries"][name] = {"seeds": rows, "mean": means, "sd": sds}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
