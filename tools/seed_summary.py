"""Summarise a suite over training seeds: mean/sd per configuration and each seed's paired test vs a baseline.

Reads SUITE/results.json (written by `supporttune run` / `supporttune report`). Variants named
`<config>-seed<N>` are grouped by `<config>`; every other entry is its own group. For each group it
prints the mean (and sd over seeds) of the headline metrics and, against `--against` (default:
the retrieval baseline), how many seeds beat it with paired-bootstrap p < 0.05 and the largest p.

    python tools/seed_summary.py runs/rag --against retrieval --markdown
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
from pathlib import Path

METRICS = (("rougeL", "ROUGE-L", 1), ("bleu", "sacreBLEU", 1), ("chrf", "chrF", 1), ("semantic_sim", "SemSim", 3))


def _group(name: str) -> str:
    return re.sub(r"-seed\d+$", "", name)


def _test(sig: list[dict], a: str, b: str, key: str) -> dict | None:
    for r in sig:
        if {r["a"], r["b"]} == {a, b} and key in r:
            t = r[key]
            return t if r["a"] == a else {**t, "diff": -t["diff"]}
    return None


def summarise(results: dict, against: str) -> list[dict]:
    groups: dict[str, list[dict]] = {}
    for e in results["entries"]:
        if "metrics" in e:
            groups.setdefault(_group(e["name"]), []).append(e)
    rows = []
    for g, members in groups.items():
        row = {"config": g, "seeds": len(members), "kind": members[0]["kind"]}
        for key, _, _ in METRICS:
            vals = [m["metrics"].get(key) for m in members if m["metrics"].get(key) is not None]
            row[key] = (statistics.mean(vals), statistics.stdev(vals) if len(vals) > 1 else 0.0) if vals else None
            tests = [_test(results["significance"], m["name"], against, key) for m in members if m["name"] != against]
            tests = [t for t in tests if t]
            if tests:
                row[f"{key}_wins"] = sum(t["diff"] > 0 and t["p_value"] < 0.05 for t in tests)
                row[f"{key}_max_p"] = max(t["p_value"] for t in tests)
        rows.append(row)
    return sorted(rows, key=lambda r: -(r["rougeL"][0] if r["rougeL"] else -1))


def markdown(rows: list[dict], against: str) -> str:
    head = ["entry", "seeds"] + [f"{label}" for _, label, _ in METRICS] + [f"beats {against} (p<0.05): " + "/".join(
        label for _, label, _ in METRICS)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["config"], str(r["seeds"])]
        for key, _, d in METRICS:
            v = r[key]
            cells.append("-" if v is None else (f"{v[0]:.{d}f} ± {v[1]:.{d}f}" if r["seeds"] > 1 else f"{v[0]:.{d}f}"))
        wins = [f"{r[k + '_wins']}/{r['seeds']}" if k + "_wins" in r else "-" for k, _, _ in METRICS]
        cells.append(" · ".join(wins))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("suite", type=Path)
    p.add_argument("--against", default="retrieval")
    p.add_argument("--markdown", action="store_true")
    args = p.parse_args()
    results = json.loads((args.suite / "results.json").read_text())
    rows = summarise(results, args.against)
    print(markdown(rows, args.against) if args.markdown else json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
