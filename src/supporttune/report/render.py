"""Render results.json into report.md and a self-contained report.html (plots embedded).

Templates only format numbers that results.json already holds; nothing is computed here.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

from ..io import read_json
from .plots import make_all

COLUMNS = [("bleu", "BLEU"), ("bleu_nltk", "BLEU (NLTK, seed)"), ("rouge1", "ROUGE-1"), ("rouge2", "ROUGE-2"),
           ("rougeL", "ROUGE-L"), ("chrf", "chrF"), ("semantic_sim", "SemSim"), ("latency_p50_s", "p50 s"),
           ("latency_p95_s", "p95 s"), ("throughput_samples_per_s", "samples/s"), ("trainable_pct", "trainable %")]
CI_KEYS = {"bleu", "rougeL", "chrf", "semantic_sim", "rouge1", "rouge2", "bleu_nltk"}


def _fmt(v, key="") -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if key == "semantic_sim":
            return f"{v:.3f}"
        return f"{v:.4g}" if abs(v) < 1 else f"{v:.2f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def _cell(e: dict, key: str) -> str:
    v = e["metrics"].get(key)
    ci = e.get("ci", {}).get(key)
    text = _fmt(v, key)
    if ci and key in CI_KEYS:
        text += f" [{_fmt(ci[0], key)}, {_fmt(ci[1], key)}]"
    return text


def _sig_mark(results: dict, name: str) -> str:
    best = results.get("best_variant")
    if name == best:
        return " **(best)**"
    for r in results["significance"]:
        if best in (r["a"], r["b"]) and name in (r["a"], r["b"]) and "rougeL" in r:
            return " (≠ best, p<0.05)" if r["rougeL"]["significant"] else " (≈ best, n.s.)"
    return ""


def tables(results: dict) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) for every table; shared by the Markdown and HTML renderers."""
    ok = [e for e in results["entries"] if "metrics" in e]
    out = [("Results (95% bootstrap CIs in brackets)", ["variant", "kind"] + [c[1] for c in COLUMNS],
            [[e["name"] + _sig_mark(results, e["name"]), e["kind"]] + [_cell(e, k) for k, _ in COLUMNS] for e in ok])]
    failed = [e for e in results["entries"] if e.get("status") == "failed"]
    if failed:
        out.append(("Failed entries", ["name", "error"], [[e["name"], e.get("error", "?")] for e in failed]))
    sig_rows = []
    for r in results["significance"]:
        cells = [r["a"], r["b"]]
        for m in ("rougeL", "bleu", "chrf", "semantic_sim"):
            x = r.get(m)
            cells.append("-" if not x else f"{x['diff']:+.3g} (p={x['p_value']:.3f}){' *' if x['significant'] else ''}")
        sig_rows.append(cells)
    out.append(("Paired bootstrap: a − b (* = significant at p<0.05)", ["a", "b", "ROUGE-L", "BLEU", "chrF", "SemSim"], sig_rows))
    cat_rows = []
    for e in ok:
        for group, values in (e.get("breakdown") or {}).items():
            for value, s in (values or {}).items():
                cat_rows.append([e["name"], f"{group}={value}", str(s["count"]), _fmt(s.get("rougeL")), _fmt(s.get("bleu")),
                                 _fmt(s.get("semantic_sim"), "semantic_sim")])
    out.append(("Per category, priority and sentiment", ["variant", "group", "n", "ROUGE-L", "BLEU", "SemSim"], cat_rows))
    best = next((e for e in ok if e["name"] == results.get("best_variant")), None)
    if best and best.get("worst"):
        out.append((f"Worst examples of {best['name']} (by ROUGE-L)", ["input", "reference", "prediction", "ROUGE-L"],
                    [[w["input"], w["reference"], w["prediction"], _fmt(w["rougeL"])] for w in best["worst"]["rougeL"]]))
    if best:
        out.append((f"Sample predictions of {best['name']}", ["brand", "input", "reference", "prediction"],
                    [[s["brand"], s["input"], s["reference"], s["prediction"]] for s in best["samples"]]))
    env = results.get("environment", {})
    out.append(("Environment", ["item", "value"],
                [[k, str(v)] for k, v in {**env.get("versions", {}), **env.get("hardware", {}), "git": env.get("git_commit")}.items()]
                + [[f"config hash {e['name']}", e.get("config_hash", "-")] for e in ok if e.get("config_hash")]))
    return out


def _summary(results: dict) -> str:
    best = results.get("best_variant")
    if not best:
        return "No variant finished."
    ties = results.get("ties_with_best") or []
    text = f"Best variant by ROUGE-L: {best}."
    if ties:
        text += f" Not significantly different from it (paired bootstrap, p≥0.05): {', '.join(ties)}."
    return text


def _md_table(header, rows) -> str:
    esc = lambda s: str(s).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def render_report(out: Path) -> tuple[Path, Path]:
    out = Path(out)
    results = read_json(out / "results.json")
    figs = make_all(results, out / "figures")
    parts = ["# supporttune report", "", _summary(results), ""]
    from .preference import render_preference  # the Human preference section (`supporttune rate`)

    pref_md, pref_html = render_preference(results.get("human_preference"))
    parts += [pref_md, ""] if pref_md else []
    for title, header, rows in tables(results):
        parts += [f"## {title}", "", _md_table(header, rows), ""]
    for name, path in figs.items():
        parts += [f"![{name}](figures/{path.name})", ""]
    md = out / "report.md"
    md.write_text("\n".join(parts))
    body = [f"<h1>supporttune report</h1><p>{html.escape(_summary(results))}</p>"]
    body.append(pref_html)  # the Human preference section, right under the summary
    for title, header, rows in tables(results):
        body.append(f"<h2>{html.escape(title)}</h2><table><thead><tr>"
                    + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr></thead><tbody>"
                    + "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
                    + "</tbody></table>")
    for name, path in figs.items():
        data = base64.b64encode(path.read_bytes()).decode()
        body.append(f'<h2>{html.escape(name)}</h2><img alt="{name}" src="data:image/png;base64,{data}">')
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>supporttune report</title><style>"
            "body{font-family:system-ui,sans-serif;margin:2em;max-width:1400px}table{border-collapse:collapse;margin:1em 0;"
            "font-size:13px}td,th{border:1px solid #ccc;padding:4px 6px;vertical-align:top}th{background:#f3f3f3}"
            "img{max-width:100%}</style></head><body>" + "".join(body) + "</body></html>")
    page_path = out / "report.html"
    page_path.write_text(page, encoding="utf-8")
    return md, page_path
