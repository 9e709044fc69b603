"""The report's Human preference section: built from ``SUITE/ratings.jsonl`` into results.json, then rendered.

``human_preference`` computes every figure (Bradley-Terry strengths with bootstrap intervals,
win rates, flags, kappa, and whether people and ROUGE-L pick the same entry); ``render_preference``
only formats them, as the rest of the report does. The comparison with the metrics is the note a
verdict can use: ``disagrees_with_metrics`` is true when the raters *clearly* (in at least 95% of
bootstrap resamples) prefer another entry to the one ROUGE-L ranks first among the rated entries.
First place is called a tie when the votes do not clearly separate the top entries (``tied_first``).
"""

from __future__ import annotations

import html
from pathlib import Path

from ..metrics.scores import PRIMARY as METRIC  # the metric the verdict ranks by
from ..rate.prefs import agreement, bradley_terry, decided, flag_counts, win_rates
from ..rate.store import FILENAME, FLAG_LABELS, FLAGS, Store

N_BOOT = 1000
CLEAR = 0.95  # share of bootstrap resamples for "clearly preferred"


def _ahead_share(draws, index: dict, a: str, b: str) -> float:
    """Share of bootstrap resamples in which ``a`` is strictly stronger than ``b``."""
    return float((draws[:, index[a]] > draws[:, index[b]]).mean())


def tied_first(strength: dict, draws, index: dict) -> tuple[list[str], dict[str, float]]:
    """The entries the votes cannot separate from the top one, and how often the top one leads each.

    Rule: an entry is tied for first when the top-ranked entry (the highest fitted strength) is ahead
    of it in fewer than ``CLEAR`` (95%) of the bootstrap resamples, the same bar as "clearly
    preferred" below. Entries of equal strength land near 50% and so always tie; the top entry's
    rank alone (its fitted strength is highest, even by a hair) is never called a lead.
    """
    top = min(strength, key=lambda n: strength[n]["rank"])
    shares = {n: _ahead_share(draws, index, top, n) for n in sorted(strength, key=lambda n: strength[n]["rank"]) if n != top}
    return [top] + [n for n, s in shares.items() if s < CLEAR], shares


def _names(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _first(leaders: list[str], shares: dict[str, float]) -> str:
    """How the raters' first place reads: one clear leader, or a tie with the share that makes it one."""
    if len(leaders) == 1:
        return f"raters prefer {leaders[0]}"
    top, rest = leaders[0], leaders[1:]
    ahead = _names([f"of {n} in {shares[n]:.0%}" for n in rest])
    return (f"raters rank {_names(leaders)} tied for first: the votes do not separate them ({top} is ahead {ahead} "
            f"of bootstrap resamples; {CLEAR:.0%} would be clear)")


def _compare_with_metric(strength: dict, draws, index: dict, entries: list[dict]) -> dict:
    scores = {e["name"]: e["metrics"][METRIC] for e in entries
              if e.get("metrics", {}).get(METRIC) is not None and e["name"] in strength}
    leaders, shares = tied_first(strength, draws, index)
    human_top = leaders[0]
    first = _first(leaders, shares)
    out = {"metric": METRIC, "human_top": human_top, "tied_first": leaders, "metric_top": None,
           "human_top_beats_metric_top": None, "rank_correlation": None, "disagrees_with_metrics": False}
    if not scores:
        out["verdict"] = f"{first[0].upper()}{first[1:]}; no rated entry has a {METRIC} score to compare with."
        return out
    metric_top = max(scores, key=scores.get)
    out["metric_top"] = metric_top
    if len(scores) >= 3:
        from scipy.stats import kendalltau

        names = sorted(scores)
        tau = kendalltau([strength[n]["theta"] for n in names], [scores[n] for n in names])[0]
        out["rank_correlation"] = None if tau != tau else round(float(tau), 3)  # NaN when a ranking is constant
    if metric_top == human_top and len(leaders) == 1:
        out["verdict"] = f"Human raters and ROUGE-L agree: {human_top} comes first among the rated entries."
        return out
    if metric_top != human_top:
        out["human_top_beats_metric_top"] = round(shares[metric_top], 3)
    if metric_top not in leaders:  # so the top entry leads it in at least CLEAR of the resamples
        out["disagrees_with_metrics"] = True
        out["verdict"] = (f"Human preference disagrees with the automatic metrics: {first}, while ROUGE-L "
                          f"ranks {metric_top} first among the rated entries ({human_top} is ahead of it in "
                          f"{out['human_top_beats_metric_top']:.0%} of bootstrap resamples).")
    else:  # a tie for first that includes the metric's top entry (one leader that is it returned above)
        out["verdict"] = f"{first[0].upper()}{first[1:]}; ROUGE-L ranks {metric_top} first among the rated entries."
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


def _td(cell: str, column: str) -> str:
    """Figures do not wrap (class num), so "12 / 0 / 0 / 8" stays one line on a phone; names may wrap."""
    kind = "" if column in ("entry", "raters") else ' class="num"'
    return f"<td{kind}>{html.escape(cell)}</td>"


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
        # in the report's scroll box: the flag columns make this table wider than a phone's screen
        page.append(f"<h3>{html.escape(title)}</h3><div class=\"scroll\"><table><thead><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header)
                    + "</tr></thead><tbody>" + "".join("<tr>" + "".join(_td(c, h) for c, h in zip(row, header)) + "</tr>"
                                                       for row in rows) + "</tbody></table></div>")
    return "\n".join(md), "".join(page)
