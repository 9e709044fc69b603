"""The report's Human preference section: built from ``SUITE/ratings.jsonl`` into results.json, then rendered.

``human_preference`` computes every figure (Bradley-Terry strengths with bootstrap intervals,
win rates, flags, kappa, and whether people and ROUGE-L pick the same entry); ``render_preference``
only formats them, as the rest of the report does. The comparison with the metrics is the note a
verdict can use: ``disagrees_with_metrics`` is true when the raters *clearly* (in at least 95% of
bootstrap resamples) prefer another entry to the one ROUGE-L ranks first among the rated entries.
"""

from __future__ import annotations

import html
from pathlib import Path

from ..metrics.scores import PRIMARY as METRIC  # the metric the verdict ranks by
from ..rate.prefs import agreement, bradley_terry, decided, flag_counts, win_rates
from ..rate.store import FILENAME, FLAG_LABELS, FLAGS, Store

N_BOOT = 1000
CLEAR = 0.95  # share of bootstrap resamples for "clearly preferred"


def _compare_with_metric(strength: dict, draws, index: dict, entries: list[dict]) -> dict:
    scores = {e["name"]: e["metrics"][METRIC] for e in entries
              if e.get("metrics", {}).get(METRIC) is not None and e["name"] in strength}
    human_top = min(strength, key=lambda n: strength[n]["rank"])
    out = {"metric": METRIC, "human_top": human_top, "metric_top": None, "human_top_beats_metric_top": None,
           "rank_correlation": None, "disagrees_with_metrics": False}
    if not scores:
        out["verdict"] = f"Human raters prefer {human_top}; no rated entry has a {METRIC} score to compare with."
        return out
    metric_top = max(scores, key=scores.get)
    out["metric_top"] = metric_top
    if len(scores) >= 3:
        from scipy.stats import kendalltau

        names = sorted(scores)
        tau = kendalltau([strength[n]["theta"] for n in names], [scores[n] for n in names])[0]
        out["rank_correlation"] = None if tau != tau else round(float(tau), 3)  # NaN when a ranking is constant
    if metric_top == human_top:
        out["verdict"] = f"Human raters and ROUGE-L agree: {human_top} comes first among the rated entries."
        return out
    share = float((draws[:, index[human_top]] > draws[:, index[metric_top]]).mean())
    out["human_top_beats_metric_top"] = round(share, 3)
    if share >= CLEAR:
        out["disagrees_with_metrics"] = True
        out["verdict"] = (f"Human preference disagrees with the automatic metrics: raters prefer {human_top}, while ROUGE-L "
                          f"ranks {metric_top} first among the rated entries ({human_top} is ahead of it in {share:.0%} "
                          f"of bootstrap resamples).")
    else:
        out["verdict"] = (f"Raters rank {human_top} first and ROUGE-L ranks {metric_top} first among the rated entries, "
                          f"but the votes do not separate the two yet ({human_top} ahead in {share:.0%} of bootstrap resamples; "
                          f"{CLEAR:.0%} would be clear).")
    return out


def human_preference(out: Path, entries: list[dict], n_boot: int = N_BOOT) -> dict | None:
    """The results.json section, or None when the suite has no decided votes."""
    store = Store(Path(out) / FILENAME)
    votes = decided(store.votes)
    if not votes:
        return None
    names = sorted({v["left"] for v in votes} | {v["right"] for v in votes})
    bt = bradley_terry(names, votes, n_boot=n_boot)
    strength = bt["strengths"]
    by_rater: dict[str, int] = {}
    for v in votes:
        by_rater[v["rater"]] = by_rater.get(v["rater"], 0) + 1
    return {
        "votes": len(votes), "skips": sum(v["choice"] == "skip" for v in store.votes), "votes_by_rater": by_rater,
        "unreadable_lines": store.skipped_lines,
        "ranking": sorted(names, key=lambda n: strength[n]["rank"]),
        "strength": strength,
        "strength_model": f"Bradley-Terry (log-strength, mean 0; tie and both-bad = half a win each), "
                          f"95% percentile bootstrap over votes, {n_boot} resamples",
        "win_rates": win_rates(names, votes),
        "flags": flag_counts(names, votes),
        "agreement": agreement(votes),
        **_compare_with_metric(strength, bt["draws"], bt["index"], entries),
    }


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"


def preference_tables(hp: dict) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) of the section, shared by the Markdown and HTML renderers."""
    names = hp["ranking"]
    rows = []
    for n in names:
        s, w, f = hp["strength"][n], hp["win_rates"][n]["overall"], hp["flags"][n]
        rows.append([str(s["rank"]), n, f"{s['theta']:+.2f} [{s['ci'][0]:+.2f}, {s['ci'][1]:+.2f}]", str(w["votes"]),
                     _pct(w["win_rate"]), f"{w['wins']} / {w['tie']} / {w['both_bad']} / {w['losses']}"]
                    + [str(f[k]) for k in FLAGS])
    out = [("Bradley-Terry strengths (95% bootstrap intervals)",
            ["rank", "entry", "strength", "votes", "win rate", "won / tie / both bad / lost"]
            + [f"flag: {FLAG_LABELS[k]}" for k in FLAGS], rows)]
    matrix = []
    for a in names:
        cells = [a]
        for b in names:
            r = hp["win_rates"][a]["vs"].get(b)
            cells.append("" if a == b else "-" if not r else f"{_pct(r['win_rate'])} (n={r['votes']})")
        matrix.append(cells)
    out.append(("Win rate of the row entry against the column entry", ["entry"] + names, matrix))
    pairs = hp["agreement"]["pairs"]
    if pairs:
        out.append(("Agreement between raters (Cohen's kappa on messages both judged)",
                    ["raters", "shared items", "kappa", "raw agreement"],
                    [[" & ".join(p["raters"]), str(p["items"]), "-" if p["kappa"] is None else f"{p['kappa']:.2f}",
                      _pct(p["raw_agreement"])] for p in pairs]))
    return out


def _intro(hp: dict) -> str:
    raters = hp["agreement"]["raters"]
    text = (f"{hp['votes']} blind votes by {len(raters)} rater{'s' if len(raters) != 1 else ''} ({', '.join(raters)}). "
            f"{hp['verdict']}")
    if len(raters) >= 2 and not hp["agreement"]["pairs"]:
        text += " Agreement not measured: no two raters judged the same message and pair."
    return text


def render_preference(hp: dict | None) -> tuple[str, str]:
    """The section as Markdown and as HTML; two empty strings when there are no votes."""
    if not hp:
        return "", ""
    note = ("Strength: Bradley-Terry log-strength; a difference of 1 means the stronger entry wins 73% of the "
            "decided votes between the two. Ties and \"both bad\" count as half a win.")
    md = ["## Human preference", "", _intro(hp), "", note, ""]
    page = [f"<h2>Human preference</h2><p><strong>{html.escape(_intro(hp))}</strong></p><p>{html.escape(note)}</p>"]
    for title, header, rows in preference_tables(hp):
        esc = lambda s: str(s).replace("|", "\\|").replace("\n", " ")  # noqa: E731
        md += [f"### {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        md += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows] + [""]
        page.append(f"<h3>{html.escape(title)}</h3><table><thead><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header)
                    + "</tr></thead><tbody>" + "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                                                       for row in rows) + "</tbody></table>")
    return "\n".join(md), "".join(page)
