"""The decision the report opens with: which entry to ship, by how much, how sure, and what ties with it.

The rule (stated in the report too): ship the entry, fine-tuned variant or baseline, with the
highest mean of the primary metric (``metrics.PRIMARY``, ROUGE-L) on the test set. It is compared
with every other entry by the paired bootstrap that ``build.py`` ran on the same test messages;
the p-values of that family are Holm-adjusted, and an entry with an adjusted p >= alpha is *not
distinguishable* from the shipped one. Because the shipped entry is either the best variant or
the best baseline, "does fine-tuning beat the best baseline" is always one of those comparisons.

``decide`` returns data and the sentences that state it; the report and ``supporttune run`` print
the sentences as they are.
"""

from __future__ import annotations

from ..metrics.scores import PRIMARY, get
from ..metrics.stats import holm

KIND = {"variant": "fine-tuned variant", "baseline": "baseline"}


def _p(p: float) -> str:
    return "p<0.001" if p < 0.001 else f"p={p:.3f}" if p < 0.01 else f"p={p:.2f}"


def _pair(significance: list[dict], ship: str, other: str, key: str) -> dict | None:
    """The paired test of ``key`` oriented as ship - other (None when the two were not compared)."""
    for r in significance:
        if {r["a"], r["b"]} == {ship, other} and key in r:
            t = r[key]
            if r["a"] == ship:
                return t
            return {**t, "diff": -t["diff"], "ci": [-t["ci"][1], -t["ci"][0]]}
    return None


def _versus(results: dict, ship: dict, ranked: list[dict], alpha: float) -> list[dict]:
    rows = []
    for e in ranked:
        t = _pair(results.get("significance", []), ship["name"], e["name"], PRIMARY)
        rows.append({"name": e["name"], "kind": e["kind"], "score": e["metrics"][PRIMARY], "compared": t is not None,
                     **({"diff": t["diff"], "ci": t["ci"], "p_value": t["p_value"]} if t else {})})
    compared = [r for r in rows if r["compared"]]
    for r, p in zip(compared, holm([r["p_value"] for r in compared])):
        r["p_adjusted"] = p
        r["distinguishable"] = p < alpha
    return rows


def _gap(m, v: dict) -> str:
    """'3.9 points (95% CI 2.1 to 5.6, p<0.001)': the gap ship - other, with its Holm-adjusted p."""
    lo, hi = v["ci"]
    return f"{m.format(v['diff'])} points (95% CI {m.format(lo)} to {m.format(hi)}, {_p(v['p_adjusted'])})"


def _variant_line(m, ship: dict, versus: dict[str, dict], best_variant: dict | None, best_baseline: dict | None):
    """The sentence on fine-tuning vs the best baseline, and whether fine-tuning wins (None: no comparison)."""
    if best_variant is None:
        return "No fine-tuned variant finished: this compares baselines only.", None
    if best_baseline is None:
        return "No baseline finished, so nothing says whether fine-tuning beats a simple alternative.", None
    bv, bb = best_variant["name"], best_baseline["name"]
    if ship["name"] == bv:
        v = versus.get(bb)
        if v is None:
            return f"No fine-tuned variant beats the best baseline: {bb} was evaluated on other test examples.", False
        if v["distinguishable"]:
            return f"Fine-tuning pays off: {bv} beats the best baseline, {bb}, by {_gap(m, v)}.", True
        return (f"No fine-tuned variant beats the best baseline: {bv} is ahead of {bb} by {_gap(m, v)}, "
                "which is not significant.", False)
    v = versus.get(bv)
    head = f"No fine-tuned variant beats the best baseline: the best variant, {bv} ({m.format(best_variant['metrics'][PRIMARY])}),"
    if v is None:
        return f"{head} scores below {bb} (not compared: other test examples).", False
    sig = "significant" if v["distinguishable"] else "not significant"
    return f"{head} is {m.format(v['diff'])} {m.label} points below {bb} ({_p(v['p_adjusted'])}, {sig}).", False


def _sample(entry: dict) -> str:
    """' on 200 of 1,843 test messages' (a `limit` was used), ' on 1,843 test messages', or '' when unknown."""
    n, total, split = entry.get("examples"), entry.get("split_examples"), entry.get("split", "test")
    if not n:
        return ""
    if total and n < total:
        return f" on {n:,} of {total:,} {split} messages"
    return f" on {n:,} {split} messages"


def decide(results: dict) -> dict:
    """The verdict section of results.json (data plus the sentences that state it)."""
    m, alpha = get(PRIMARY), results.get("alpha", 0.05)
    entries = results["entries"]
    failed = [e["name"] for e in entries if e.get("status") == "failed"]
    ok = sorted((e for e in entries if e.get("metrics", {}).get(PRIMARY) is not None), key=lambda e: -e["metrics"][PRIMARY])
    rule = (f"Decision rule: ship the entry (fine-tuned variant or baseline) with the highest mean {m.label} on the test set. "
            f"Every other entry is compared with it by a paired bootstrap over the same test messages; p-values are "
            f"Holm-adjusted over those comparisons, and an entry with adjusted p >= {alpha} is not distinguishable from it.")
    out = {"status": "ok", "metric": PRIMARY, "metric_label": m.label, "alpha": alpha, "correction": "holm", "rule": rule,
           "failed": failed, "ship": None, "versus": [], "indistinguishable": [], "best_variant": None,
           "best_baseline": None, "fine_tuning_wins": None}
    if not ok:
        out.update(status="no_entries", headline="No entry finished: there is nothing to ship.",
                   lines=[f"Every entry failed: {', '.join(failed)}." if failed else "The suite has no entries."])
        return out
    ship = ok[0]
    versus = _versus(results, ship, ok[1:], alpha)
    by_name = {v["name"]: v for v in versus}
    best_variant = next((e for e in ok if e["kind"] == "variant"), None)
    best_baseline = next((e for e in ok if e["kind"] == "baseline"), None)
    ties = [v for v in versus if v["compared"] and not v["distinguishable"]]
    beaten = [v for v in versus if v.get("distinguishable")]
    ci = ship.get("ci", {}).get(PRIMARY)
    headline = (f"Ship {ship['name']} ({KIND.get(ship['kind'], ship['kind'])}): {m.label} "
                f"{m.format_ci(ship['metrics'][PRIMARY], ci)}{_sample(ship)}.")
    lines = []
    if not versus:
        lines.append("It is the only entry that finished: there is nothing to compare it with.")
    elif not ties and len(beaten) == len(versus):
        lines.append(f"It is significantly better than all {len(versus)} other entries, ahead of the runner-up, "
                     f"{versus[0]['name']}, by {_gap(m, versus[0])}.")
    else:
        if ties:
            lines.append("Not distinguishable from it: " + "; ".join(f"{v['name']} ({m.format(v['score'])}, {_p(v['p_adjusted'])})"
                                                                    for v in ties) + ".")
        if beaten:
            lo, hi = min(v["diff"] for v in beaten), max(v["diff"] for v in beaten)
            span = m.format(lo) if m.format(lo) == m.format(hi) else f"{m.format(lo)} to {m.format(hi)}"
            lines.append(f"It is significantly better than the other {len(beaten)} (by {span} {m.label} points).")
        missing = [v["name"] for v in versus if not v["compared"]]
        if missing:
            lines.append(f"Not compared (evaluated on other test examples): {', '.join(missing)}.")
    variant_line, wins = _variant_line(m, ship, by_name, best_variant, best_baseline)
    lines.append(variant_line)
    pref = results.get("human_preference") or {}
    if pref.get("disagrees_with_metrics"):
        lines.append("Caution: " + (pref.get("verdict") or "human raters prefer another entry than the metrics do."))
    if failed:
        n = len(failed)
        lines.append(f"{n} {'entry' if n == 1 else 'entries'} failed and {'is' if n == 1 else 'are'} not compared: "
                     f"{', '.join(failed)}.")
    runaway = [e for e in ok if e.get("runaway")]
    if runaway:
        lines.append("Replies cut at the token limit on most messages (their scores measure cut-off text; raise "
                     "max_new_tokens or check the stop tokens): "
                     + ", ".join(f"{e['name']} ({e['runaway']:.0%})" for e in runaway) + ".")
    if ship.get("speed_flags"):
        lines.append(f"Its speed figures are unreliable: {'; '.join(ship['speed_flags'])}.")
    out.update(headline=headline, lines=lines, versus=versus, indistinguishable=[v["name"] for v in ties],
               ship={"name": ship["name"], "kind": ship["kind"], "score": ship["metrics"][PRIMARY], "ci": ci},
               best_variant=best_variant and best_variant["name"], best_baseline=best_baseline and best_baseline["name"],
               fine_tuning_wins=wins, human_preference_disagrees=bool(pref.get("disagrees_with_metrics")))
    return out


def summary_lines(verdict: dict) -> list[str]:
    """The verdict as the CLI prints it: the headline, then one indented line per finding."""
    return [verdict.get("headline", "")] + [f"  - {line}" for line in verdict.get("lines", [])]
