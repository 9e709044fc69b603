"""The report's tables, built from results.json; every number is formatted by its metric's entry.

Each function returns a ``Table`` (or None when there is nothing to show); ``render.py`` writes
the same tables as Markdown and HTML. Rows follow the verdict's order (the shipped entry first).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..metrics.scores import GROUPS, PRIMARY, get, select

FLAG = "†"
RUNAWAY_FLAG = "‡"


@dataclass
class Table:
    title: str
    header: list[str]
    rows: list[list[str]]
    note: str = ""
    numeric: set[int] = field(default_factory=set)
    """Column indexes to right-align."""
    marked: set[int] = field(default_factory=set)
    """Row indexes to highlight (the shipped entry)."""
    text: bool = False
    """Cells hold prose (replies, errors) that should wrap."""


def _p(p: float) -> str:
    return "p<0.001" if p < 0.001 else f"p={p:.3f}" if p < 0.01 else f"p={p:.2f}"


def ranked(results: dict) -> list[dict]:
    """Finished entries in the verdict's order (the shipped one first)."""
    ok = {e["name"]: e for e in results["entries"] if "metrics" in e}
    v = results.get("verdict") or {}
    order = ([v["ship"]["name"]] if v.get("ship") else []) + [x["name"] for x in v.get("versus", [])]
    return [ok[n] for n in order if n in ok] + [e for n, e in ok.items() if n not in order]


def _cell(e: dict, m) -> str:
    text = m.format_ci(e["metrics"].get(m.key), (e.get("ci") or {}).get(m.key) if m.ci else None)
    if m.group == "speed" and e.get("speed_flags") and text != "-":
        text += f" {FLAG}"
    if m.key == PRIMARY and e.get("runaway") and text != "-":
        text += f" {RUNAWAY_FLAG}"
    return text


def _versus_cell(v: dict | None, m) -> str:
    if v is None:
        return "ship"
    if not v.get("compared"):
        return "not compared"
    mark = "≈ " if not v["distinguishable"] else ""
    return f"{mark}{m.format(-v['diff'])} ({_p(v['p_adjusted'])})"


def _flag_note(entries: list[dict]) -> str:
    flagged = [f"{e['name']}: {'; '.join(e['speed_flags'])}" for e in entries if e.get("speed_flags")]
    return f" {FLAG} Unreliable speed figures — " + " | ".join(flagged) + "." if flagged else ""


def _runaway_note(entries: list[dict]) -> str:
    flagged = [f"{e['name']} ({e['runaway']:.0%})" for e in entries if e.get("runaway")]
    return (f" {RUNAWAY_FLAG} Replies cut at the token limit on most messages, so the score measures cut-off text — "
            + ", ".join(flagged) + ".") if flagged else ""


def _sample_note(entries: list[dict]) -> str:
    sizes = {(e.get("examples"), e.get("split_examples"), e.get("split", "test")) for e in entries}
    if len(sizes) != 1:
        return ""
    n, total, split = next(iter(sizes))
    if not n:
        return ""
    return f" Scored on {n:,} of {total:,} {split} messages." if total and n < total else f" Scored on {n:,} {split} messages."


def main_table(results: dict) -> Table | None:
    entries = ranked(results)
    if not entries:
        return None
    verdict = results.get("verdict") or {}
    versus = {v["name"]: v for v in verdict.get("versus", [])}
    primary = get(PRIMARY)
    cols = [m for m in select(headline=True) if any(e["metrics"].get(m.key) is not None for e in entries)]
    header = ["entry", "kind"]
    for m in cols:
        header.append(m.column)
        if m.key == PRIMARY:
            header.append("Δ vs ship")
    rows = []
    for e in entries:
        row = [e["name"], e["kind"]]
        for m in cols:
            row.append(_cell(e, m))
            if m.key == PRIMARY:
                row.append(_versus_cell(versus.get(e["name"]), m))
        rows.append(row)
    note = (f"Ranked by {primary.label}. Brackets: 95% bootstrap CI. 'Δ vs ship': the entry's {primary.label} minus the "
            "shipped entry's, with the Holm-adjusted paired-bootstrap p; ≈ = not distinguishable from it. "
            "'-': not measured (replies that are looked up, not generated, have no latency or throughput)."
            + _sample_note(entries) + _runaway_note(entries) + _flag_note(entries))
    return Table("Main results", header, rows, note, numeric=set(range(2, len(header))), marked={0})


def group_tables(results: dict) -> list[Table]:
    """One table per metric group (quality, reply shape, speed, size, training): every metric of the table."""
    entries = ranked(results)
    out = []
    for group, title in GROUPS.items():
        cols = [m for m in select(group=group) if any(e["metrics"].get(m.key) is not None for e in entries)]
        if not cols:
            continue
        rows = [[e["name"]] + [_cell(e, m) for m in cols] for e in entries]
        note = "; ".join(f"{m.label}: {m.about}" + ("" if m.higher_is_better is None else
                         " (higher is better)" if m.higher_is_better else " (lower is better)") for m in cols) + "."
        out.append(Table(f"{title}: all metrics", ["entry"] + [m.column for m in cols], rows, note,
                         numeric=set(range(1, len(cols) + 1)), marked={0}))
    return out


STAGES = (("load_s", "load"), ("compile_s", "compile"), ("generation_s", "generation"), ("perplexity_s", "perplexity"),
          ("scoring_s", "scoring"), ("latency_s", "latency"), ("total_s", "total"))


def timing_table(results: dict) -> Table | None:
    """Where each evaluation's wall time went, stage by stage (metrics.json "timing"): the next bottleneck."""
    entries = [e for e in ranked(results) if (e.get("timing") or {}).get("total_s") is not None]
    if not entries:
        return None

    def cache(t: dict) -> str:
        flags = {True: "yes", False: "no", None: "-"}
        return f"{flags[t.get('from_cache')]} / {flags[t.get('slot_reused')]}"

    rows = [[e["name"]] + [f"{e['timing'].get(k, 0):,.1f}" for k, _ in STAGES] + [cache(e["timing"])] for e in entries]
    note = ("Seconds of each evaluate, stage by stage: model load (and the engine's merged copy), compile of the "
            "decode step, steady generation, the perplexity pass, scoring, the batch-1 latency samples, and the "
            "whole evaluate. Cache: compiled artifacts loaded from this machine's compile cache / the compiled "
            "model reused from an earlier entry in the same process ('-': nothing compiled).")
    return Table("Evaluation time by stage (s)", ["entry"] + [label for _, label in STAGES] + ["cache"], rows, note,
                 numeric=set(range(1, len(STAGES) + 1)), marked={0})


def significance_table(results: dict) -> Table | None:
    tests = select(test=True)
    ship = ((results.get("verdict") or {}).get("ship") or {}).get("name")
    # a preference child against its parent first (the question it was trained to answer), then the shipped entry's
    pairs = sorted(results.get("significance", []), key=lambda r: ("child_of" not in r, ship not in (r["a"], r["b"])))
    if not pairs:
        return None
    rows = []
    for r in pairs:
        cells = [r["a"], r["b"]]
        if "child_of" in r:
            cells = [f"{x} ({'child' if x == r['child_of']['child'] else 'parent'})" for x in cells]
        for m in tests:
            x = r.get(m.key)
            sign = "+" if x and x["diff"] >= 0 else ""
            cells.append("-" if not x else f"{sign}{m.format(x['diff'])} ({_p(x['p_value'])}){' *' if x['significant'] else ''}")
        rows.append(cells)
    return Table("Paired bootstrap tests, every pair", ["a", "b"] + [f"{m.label}: a − b" for m in tests], rows,
                 f"Same test messages, {len(pairs)} pairs; unadjusted p; * = p < {results.get('alpha', 0.05)}. "
                 "The verdict adjusts the shipped entry's comparisons (Holm).", numeric=set(range(2, 2 + len(tests))))


def breakdown_tables(results: dict) -> list[Table]:
    """Primary metric per category / priority / sentiment value, one column per entry."""
    entries, m = ranked(results), get(PRIMARY)
    groups = sorted({g for e in entries for g in (e.get("breakdown") or {})})
    out = []
    for g in groups:
        values = sorted({v for e in entries for v in ((e.get("breakdown") or {}).get(g) or {})})
        rows = []
        for value in values:
            cells = [(e.get("breakdown") or {}).get(g, {}).get(value) for e in entries]
            n = next((c["count"] for c in cells if c), 0)
            rows.append([str(value), str(n)] + [m.format(c.get(m.key)) if c else "-" for c in cells])
        out.append(Table(f"{m.label} by {g}", [g, "n"] + [e["name"] for e in entries], rows,
                         "Small groups (n < 20) are noisy.", numeric=set(range(1, len(entries) + 2))))
    return out


def examples_tables(results: dict) -> list[Table]:
    ship = next(iter(ranked(results)), None)
    if ship is None:
        return []
    out, m = [], get(PRIMARY)
    worst = (ship.get("worst") or {}).get(PRIMARY)
    if worst:
        out.append(Table(f"Worst replies of {ship['name']} by {m.label}", ["input", "reference", "reply", m.label],
                         [[w["input"], w["reference"], w["prediction"], m.format(w[PRIMARY])] for w in worst], numeric={3},
                         text=True))
    if ship.get("samples"):
        out.append(Table(f"Sample replies of {ship['name']}", ["brand", "input", "reference", "reply"],
                         [[s["brand"], s["input"], s["reference"], s["prediction"]] for s in ship["samples"]], text=True))
    return out


def failed_table(results: dict) -> Table | None:
    failed = [e for e in results["entries"] if e.get("status") == "failed"]
    if not failed:
        return None
    return Table("Failed entries", ["name", "kind", "error"], [[e["name"], e["kind"], e.get("error", "?")] for e in failed],
                 text=True)


def environment_table(results: dict) -> Table:
    env = results.get("environment", {})
    rows = [[k, str(v)] for k, v in {**env.get("versions", {}), **env.get("hardware", {}), "git": env.get("git_commit")}.items()]
    if results.get("suite_seconds") is not None:
        rows.append(["suite wall time", f"{results['suite_seconds']:,.0f} s"])
    for e in ranked(results):
        ctx = e.get("latency_context") or {}
        if e.get("generated") and ctx.get("latency_samples"):
            load = ctx.get("latency_load_1m")
            rows.append([f"latency of {e['name']}", f"{ctx['latency_samples']} timed replies"
                         + (f", load {load:.1f} on {ctx.get('latency_cpus')} CPUs" if load is not None else "")])
        if e.get("config_hash"):
            rows.append([f"config hash {e['name']}", e["config_hash"]])
    return Table("Environment", ["item", "value"], rows, text=True)
