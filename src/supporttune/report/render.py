"""Render results.json into report.md and a self-contained report.html (plots embedded).

Layout, the same in both: the verdict (results.json's ``verdict``, word for word), the main table
(headline metrics with CIs), the figures, optional sections (``OPTIONAL_SECTIONS``), then details
(every metric by group, paired tests, per-group scores, worst and sample replies, failures,
environment). Templates only format what results.json holds; nothing is computed here.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Callable

from PIL import Image

from .. import suitedir
from ..core.io import read_json
from . import tables as T
from .plots import make_all
from .preference import (
    render_preference,  # the Human preference section of `supporttune rate`
)

OPTIONAL_SECTIONS: tuple[tuple[str, Callable[[dict | None], tuple[str, str]]], ...] = (
    ("human_preference", render_preference),
)
"""Sections that appear only when results.json holds their key: (key, renderer of that value ->
(markdown, html)); shown after the figures. E.g. ("human_preference", render_preference)."""

FIGURE_MIN_SCALE = 0.8
"""A figure is never drawn below this share of its pixel size (its 8 pt labels would blur below about
9 px); on a narrower screen it scrolls sideways in its own box instead of widening the page."""

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:0 auto;padding:1.2em;max-width:1200px;color:#222;
line-height:1.4}
h1{font-size:1.5em;margin:.2em 0 .6em}h2{font-size:1.2em;margin:1.6em 0 .4em;border-bottom:1px solid #ddd}
.verdict{border-left:6px solid #c58a00;background:#fff8e6;padding:.7em 1em;margin:0 0 1em}
.verdict.win{border-color:#2e7d32;background:#eef7ee}.verdict.none{border-color:#c62828;background:#fdecea}
.verdict .headline{font-size:1.25em;font-weight:600;margin:.1em 0 .4em}.verdict ul{margin:.2em 0;padding-left:1.2em}
.rule{color:#555;font-size:.85em;margin:.5em 0 0}
.scroll{overflow-x:auto;margin:.5em 0}table{border-collapse:collapse;font-size:13px}
td,th{border:1px solid #d4d4d4;padding:4px 7px;vertical-align:top;text-align:left}th{background:#f3f3f3}
.names td:first-child{white-space:nowrap}td.num{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}tr.ship td{background:#eef7ee;font-weight:600}
.note{color:#555;font-size:.85em;margin:.2em 0 .8em}img{max-width:100%;height:auto}
figure{margin:.8em 0;overflow-x:auto}
details{margin:.6em 0}summary{cursor:pointer;font-weight:600;font-size:1.05em}
"""


def _name(results: dict) -> str:
    return results.get("name") or "suite"


def _verdict_class(v: dict) -> str:
    if v.get("status") != "ok":
        return "none"
    return "win" if v.get("fine_tuning_wins") else "warn"


def _md_table(t: T.Table) -> str:
    esc = lambda s: str(s).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    rows = [[f"**{c}**" if i in t.marked and j == 0 else c for j, c in enumerate(r)] for i, r in enumerate(t.rows)]
    align = ["---:" if j in t.numeric else "---" for j in range(len(t.header))]
    lines = ["| " + " | ".join(esc(h) for h in t.header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + (f"\n\n{t.note}" if t.note else "")


def _html_table(t: T.Table) -> str:
    e = html.escape
    head = "".join(f"<th>{e(h)}</th>" for h in t.header)
    body = "".join(
        (f'<tr class="ship">' if i in t.marked else "<tr>")
        + "".join(f'<td class="num">{e(str(c))}</td>' if j in t.numeric else f"<td>{e(str(c))}</td>" for j, c in enumerate(r))
        + "</tr>" for i, r in enumerate(t.rows))
    note = f'<p class="note">{e(t.note)}</p>' if t.note else ""
    wrap = "scroll" if t.text else "scroll names"
    return f'<div class="{wrap}"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>{note}'


def _details(results: dict) -> list[T.Table]:
    found = [*T.group_tables(results), T.timing_table(results), T.significance_table(results), *T.breakdown_tables(results),
             *T.examples_tables(results), T.failed_table(results), T.environment_table(results)]
    return [t for t in found if t is not None]


def _optional(results: dict) -> list[tuple[str, str]]:
    out = []
    for key, render in OPTIONAL_SECTIONS:
        if results.get(key) is not None:
            md, page = render(results.get(key))
            if md:
                out.append((md, page))
    return out


def markdown(results: dict, figs: list[tuple[str, Path]]) -> str:
    v = results.get("verdict") or {}
    parts = [f"# supporttune report: {_name(results)}", "", f"**{v.get('headline', '')}**", ""]
    parts += [f"- {line}" for line in v.get("lines", [])] + ["", f"_{v.get('rule', '')}_", ""]
    main = T.main_table(results)
    if main:
        parts += [f"## {main.title}", "", _md_table(main), ""]
    if figs:
        parts += ["## Figures", ""] + [f"![{title}](figures/{path.name})\n" for title, path in figs]
    parts += [md + "\n" for md, _ in _optional(results)]
    parts += ["## Details", ""]
    for t in _details(results):
        parts += [f"### {t.title}", "", _md_table(t), ""]
    return "\n".join(parts)


def page(results: dict, figs: list[tuple[str, Path]]) -> str:
    e = html.escape
    v = results.get("verdict") or {}
    body = [f"<h1>supporttune report: {e(_name(results))}</h1>",
            f'<section class="verdict {_verdict_class(v)}"><p class="headline">{e(v.get("headline", ""))}</p><ul>'
            + "".join(f"<li>{e(line)}</li>" for line in v.get("lines", []))
            + f'</ul><p class="rule">{e(v.get("rule", ""))}</p></section>']
    main = T.main_table(results)
    if main:
        body.append(f"<h2>{e(main.title)}</h2>{_html_table(main)}")
    if figs:
        body.append("<h2>Figures</h2>")
    for title, path in figs:
        data = base64.b64encode(path.read_bytes()).decode()
        with Image.open(path) as im:
            width = round(im.width * FIGURE_MIN_SCALE)
        body.append(f'<figure><img alt="{e(title)}" style="min-width:{width}px" src="data:image/png;base64,{data}"></figure>')
    body += [h for _, h in _optional(results)]
    body.append("<h2>Details</h2>")
    for t in _details(results):
        body.append(f"<details><summary>{e(t.title)}</summary>{_html_table(t)}</details>")
    return ("<!doctype html><html><head><meta charset='utf-8'><meta name='viewport' content='width=device-width, "
            f"initial-scale=1'><title>supporttune report: {e(_name(results))}</title><style>{CSS}</style></head><body>"
            + "".join(body) + "</body></html>")


def render_report(out: Path) -> tuple[Path, Path]:
    out = Path(out)
    results = read_json(out / suitedir.RESULTS)
    figs = make_all(results, out / suitedir.FIGURES)
    md = out / suitedir.REPORT_MD
    md.write_text(markdown(results, figs), encoding="utf-8")
    page_path = out / suitedir.REPORT_HTML
    page_path.write_text(page(results, figs), encoding="utf-8")
    return md, page_path
