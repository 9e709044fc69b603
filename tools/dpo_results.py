"""Issue 22's GPU result, scored here: each seed's DPO child against its SFT parent on the TWCS test split.

Reads the folder tools/gpu_dpo.sh packed (seedN/parent.jsonl, child.jsonl: evaluate's predictions,
scored on the device without semantic similarity), rescores both with the project's metrics (semantic
similarity included: MiniLM is here) and runs the paired tests the report runs. Writes numbers only.

    python tools/dpo_results.py DIR --out docs/results/dpo-auto-pairs.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _scored(path: Path):
    from supporttune.evaluate.config import ScoringOptions
    from supporttune.evaluate.stage import score
    from supporttune.inference.decode import Generated
    from supporttune.metrics.scores import CorpusStats

    preds = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    examples = [{"id": r["id"], "thread_id": r["thread_id"], "brand": r["brand"], "input": r["input"],
                 "output": r["reference"], "category": r["category"], "sentiment": r["sentiment"],
                 "priority": r["priority"]} for r in preds]
    gens = [Generated(r["prediction"], r["new_tokens"], r["hit_max"], None) for r in preds]
    rows, metrics = score(examples, gens, [], ScoringOptions(bootstrap=1000), generated=True)
    return rows, metrics, CorpusStats([g.text for g in gens], [ex["output"] for ex in examples])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder", type=Path)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    from supporttune.metrics.scores import select
    from supporttune.metrics.stats import paired_test

    keys = [m.key for m in select(test=True)]
    report = {}
    for seed_dir in sorted(args.folder.glob("seed*")):
        if not (seed_dir / "child.jsonl").is_file():
            report[seed_dir.name] = {"missing": True}
            continue
        parent, child = _scored(seed_dir / "parent.jsonl"), _scored(seed_dir / "child.jsonl")
        entry = {}
        for name, (_, m, _) in (("parent", parent), ("child", child)):
            entry[name] = {k: m.get(k) for k in ("rougeL", "bleu", "chrf", "semantic_sim")}
        entry["child_vs_parent"] = {k: paired_test(k, [r["scores"].get(k) for r in child[0]],
                                                   [r["scores"].get(k) for r in parent[0]], child[2], parent[2], 1000)
                                    for k in keys}
        summary = seed_dir / "child_summary.json"
        if summary.is_file():
            s = json.loads(summary.read_text())
            entry["train"] = {k: s.get(k) for k in ("steps", "wall_time_s", "final_train_loss", "train_examples", "tokens_per_s")}
        report[seed_dir.name] = entry
        print(seed_dir.name, json.dumps({k: entry[k] for k in ("parent", "child")}), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
