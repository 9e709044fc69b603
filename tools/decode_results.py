"""Issue 21's decoding lever, scored on the CPU: MBR selection over the candidates tools/gpu_decode.py wrote.

For every seed's val split it selects a reply per message for each (temperature, N, utility) with the
project's MBR core (inference/mbr.py), over the pool [greedy] + the first N samples, and scores it with the
project's metrics. For each --select metric, the configuration with the best mean val score over the seeds is then scored on the
test split (3 seeds) with CIs and paired tests against greedy (today's recipe), beam search, one sample,
and the retrieval and constant baselines (evaluated here by evaluate/baselines.py). Writes numbers only.

    python tools/decode_results.py --data .dev/twcs --decode DIR_WITH_decode_seed*.jsonl --out docs/results/decode-mbr.json
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path


def _load(path: Path) -> dict[str, list[dict]]:
    rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    return {s: [r for r in rows if r["split"] == s] for s in ("val", "test")}


def _quick(examples: list[dict], texts: list[str]) -> dict:
    from supporttune.metrics.scores import corpus_scores, per_example_scores

    refs = [ex["output"] for ex in examples]
    rows = per_example_scores(texts, refs, semantic=False)
    m = corpus_scores(texts, refs, rows)
    return {k: round(m[k], 3) for k in ("rougeL", "bleu", "chrf") if m.get(k) is not None}


def _full(examples: list[dict], texts: list[str]):
    from supporttune.evaluate.config import ScoringOptions
    from supporttune.evaluate.stage import score
    from supporttune.inference.decode import Generated
    from supporttune.metrics.scores import CorpusStats

    gens = [Generated(t, len(t.split()), False, None) for t in texts]
    rows, metrics = score(examples, gens, [], ScoringOptions(bootstrap=1000), generated=True)
    return rows, metrics, CorpusStats(texts, [ex["output"] for ex in examples])


def _pick(rows: list[dict], temp: str, n: int, utility: str) -> list[str]:
    from supporttune.inference.mbr import mbr_replies

    pools = [[r["greedy"]] + r["samples"][temp][:n] for r in rows]
    return [text for _, text in mbr_replies(pools, utility)]


def _baseline(name: str, data: Path, examples: list[dict]) -> list[str]:
    from supporttune.evaluate import baselines
    from supporttune.evaluate.baselines import BaselineInputs
    from supporttune.evaluate.config import EvalOptions

    return [reply for reply, _ in baselines.get(name).run(BaselineInputs(examples, data, EvalOptions(data=data)))]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--decode", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--ns", default="4,8,16")
    p.add_argument("--utilities", default="chrf,rouge_l,bleu,mix")
    p.add_argument("--select", default="rougeL,bleu", help="val metrics that each choose one MBR setting for test")
    args = p.parse_args()
    from supporttune.data.split import load_split
    from supporttune.metrics.scores import select
    from supporttune.metrics.stats import paired_test

    files = sorted(args.decode.glob("decode_seed*.jsonl"))
    seeds = {f.stem.removeprefix("decode_seed"): _load(f) for f in files}
    split_rows = {s: load_split(args.data, s) for s in ("val", "test")}
    for s, d in seeds.items():  # the GPU wrote the splits in the same order
        assert [r["id"] for r in d["test"]] == [ex["id"] for ex in split_rows["test"]], s
    temps = list(next(iter(seeds.values()))["val"][0]["samples"])
    ns = [int(n) for n in args.ns.split(",")]
    grid = []
    for t in temps:
        for n in ns:
            for u in args.utilities.split(","):
                per_seed = {s: _quick(split_rows["val"], _pick(d["val"], t, n, u)) for s, d in seeds.items()}
                mean = {k: round(statistics.mean(v[k] for v in per_seed.values()), 3) for k in ("rougeL", "bleu", "chrf")}
                grid.append({"temperature": float(t), "n": n, "utility": u, "val_mean": mean})
                print(json.dumps(grid[-1]), flush=True)
    val_greedy = {k: round(statistics.mean(_quick(split_rows["val"], [r["greedy"] for r in d["val"]])[k]
                                           for d in seeds.values()), 3) for k in ("rougeL", "bleu", "chrf")}
    chosen = {m: max(grid, key=lambda g, m=m: g["val_mean"][m]) for m in args.select.split(",")}

    first = next(iter(chosen))
    test = split_rows["test"]
    report = {"val_greedy_mean": val_greedy, "val_grid": grid, "chosen_on_val": chosen, "test": {}}
    fixed = {"retrieval": _baseline("retrieval", args.data, test), "constant": _baseline("constant", args.data, test)}
    scored_fixed = {k: _full(test, v) for k, v in fixed.items()}
    keys = [m.key for m in select(test=True)]
    for s, d in seeds.items():
        entries = {"greedy": [r["greedy"] for r in d["test"]], "beam": [r["beam"] for r in d["test"]],
                   "sample": [r["samples"][str(chosen[first]["temperature"])][0] for r in d["test"]]}
        for m, g in chosen.items():
            entries[f"mbr_{m}"] = _pick(d["test"], str(g["temperature"]), g["n"], g["utility"])
        scored = {k: _full(test, v) for k, v in entries.items()} | scored_fixed
        out = {}
        for name, (rows, metrics, _) in scored.items():
            out[name] = {k: metrics.get(k) for k in ("rougeL", "bleu", "chrf", "semantic_sim", "bleu")}
            out[name]["ci"] = {k: metrics["ci"].get(k) for k in ("rougeL", "bleu", "chrf", "semantic_sim")}
        tests = {}
        for a in [f"mbr_{m}" for m in chosen] + ["greedy", "beam"]:
            for b in ("retrieval", "constant", "greedy"):
                if a == b:
                    continue
                ra, _, ca = scored[a]
                rb, _, cb = scored[b]
                tests[f"{a}_vs_{b}"] = {k: paired_test(k, [r["scores"].get(k) for r in ra], [r["scores"].get(k) for r in rb],
                                                       ca, cb, 1000) for k in keys}
        report["test"][s] = {"entries": out, "paired": tests}
        print(json.dumps({s: out}), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
