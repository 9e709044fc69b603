"""Report figures (matplotlib, Agg), each named for what it shows.

* ``quality_by_entry.png``: one panel per metric the metrics table marks ``plot``, entries ranked
  by the primary metric (the shipped one on top), 95% CI whiskers, value labels past the whiskers.
* ``quality_vs_latency.png``: the primary metric against batch-1 latency, for entries that generate.
* ``training_loss.png``: training and validation loss per variant.

Entries are drawn in the verdict's order; colours: variants blue, baselines grey, the shipped entry
outlined. Nothing here computes a result: it draws what results.json holds.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from ..metrics.scores import PRIMARY, get, select  # noqa: E402
from .tables import ranked  # noqa: E402

COLORS = {"variant": "#3b6fb6", "baseline": "#9a9a9a"}
PANELS_PER_ROW = 2  # quality panels wrap into rows: one row of four was 1,600 px wide and unreadable once shrunk to a phone


def save_figure(fig, path: Path) -> Path:
    """Every figure of the reports is written the same way (tight layout, 110 dpi) and closed."""
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _ship(results: dict) -> str | None:
    return ((results.get("verdict") or {}).get("ship") or {}).get("name")


def quality_by_entry(results: dict, path: Path) -> Path | None:
    entries, ship = ranked(results), _ship(results)
    metrics = [m for m in select(plot=True) if any(e["metrics"].get(m.key) is not None for e in entries)]
    if not entries or not metrics:
        return None
    n = len(entries)
    cols = min(PANELS_PER_ROW, len(metrics))
    rows = -(-len(metrics) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols + 1.6, rows * (0.42 * n + 1.0) + 0.5), sharey=True,
                             squeeze=False)
    ys = list(range(n))[::-1]  # first entry on top
    for ax in axes.flat[len(metrics):]:
        fig.delaxes(ax)  # an odd number of metrics leaves one empty slot
    for ax, m in zip(axes.flat, metrics):
        vals = [e["metrics"].get(m.key) for e in entries]
        cis = [(e.get("ci") or {}).get(m.key) for e in entries]
        for y, e, v, ci in zip(ys, entries, vals, cis):
            if v is None:
                ax.text(0, y, " n/a", va="center", fontsize=8, color="#666")
                continue
            ax.barh(y, v, color=COLORS.get(e["kind"], "C1"), height=0.7,
                    edgecolor="black" if e["name"] == ship else "none", linewidth=1.2)
            if ci:
                ax.errorbar(v, y, xerr=[[max(0, v - ci[0])], [max(0, ci[1] - v)]], color="black", capsize=2, lw=0.9)
            ax.text(max(v, ci[1] if ci else v), y, f" {m.format(v)}", va="center", fontsize=7.5)
        highs = [max(v, ci[1] if ci else v) for v, ci in zip(vals, cis) if v is not None]
        lows = [min(v, ci[0] if ci else v) for v, ci in zip(vals, cis) if v is not None]
        ax.set_xlim(min(0, min(lows, default=0)) * 1.15, max(highs, default=1) * 1.28 or 1)
        ax.set_title(m.label, fontsize=10)
        ax.tick_params(axis="x", labelsize=8)
        ax.grid(axis="x", alpha=0.3)
    for row in axes:
        row[0].set_yticks(ys, [e["name"] for e in entries], fontsize=8.5)
    fig.suptitle("Reply quality per entry (95% CI; blue: fine-tuned, grey: baseline; outlined: ship)", fontsize=10.5)
    return save_figure(fig, path)


def quality_vs_latency(results: dict, path: Path) -> Path | None:
    primary, lat = get(PRIMARY), get("latency_p50_s")
    entries = [e for e in ranked(results) if e["metrics"].get(lat.key) and e["metrics"].get(primary.key) is not None]
    if not entries:
        return None
    ship = _ship(results)
    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    xs = [e["metrics"][lat.key] * lat.scale for e in entries]
    for i, (e, x) in enumerate(zip(entries, xs)):
        y, ci = e["metrics"][primary.key], (e.get("ci") or {}).get(primary.key)
        ax.errorbar(x, y, yerr=[[y - ci[0]], [ci[1] - y]] if ci else None, fmt="o", ms=7, capsize=3,
                    color=COLORS.get(e["kind"], "C1"), mec="black" if e["name"] == ship else COLORS.get(e["kind"], "C1"))
        flag = " †" if e.get("speed_flags") else ""
        ax.annotate(e["name"] + flag, (x, y), fontsize=8, xytext=(8, 5 if i % 2 == 0 else -13), textcoords="offset points",
                    bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.85), zorder=5)
    for kind, color in COLORS.items():  # only kinds drawn: a legend entry with no point misleads
        if any(e["kind"] == kind for e in entries):
            ax.scatter([], [], color=color, label="fine-tuned variant" if kind == "variant" else kind)
    ax.legend(fontsize=8, loc="best")
    if max(xs) / max(min(xs), 1e-9) > 20:
        ax.set_xscale("log")
    ax.margins(x=0.25, y=0.15)
    ax.set_xlabel(f"batch-1 {lat.column} (lower is better)")
    ax.set_ylabel(f"{primary.label} (higher is better)")
    ax.set_title(f"{primary.label} vs latency (entries that generate replies; † = unreliable timing)", fontsize=10)
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def training_loss(results: dict, path: Path) -> Path | None:
    runs = [e for e in ranked(results) if e.get("loss")]
    if not runs:
        return None
    fig, ax = plt.subplots(figsize=(8.5, 4.2))
    for i, e in enumerate(runs):
        color = f"C{i % 10}"
        tr = [(r["step"], r["train_loss"]) for r in e["loss"] if "train_loss" in r]
        va = [(r["step"], r["val_loss"]) for r in e["loss"] if "val_loss" in r]
        if tr:
            ax.plot(*zip(*tr), color=color, label=f"{e['name']} train")
        if va:
            ax.plot(*zip(*va), "o--", color=color, label=f"{e['name']} val")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are whole: no tick at 1.25
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (reply tokens)")
    ax.set_title("Training (line) and validation (dashed) loss per variant", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7.5, loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0)
    return save_figure(fig, path)


FIGURES = (("quality_by_entry", "Reply quality per entry", quality_by_entry),
           ("quality_vs_latency", "Quality vs latency", quality_vs_latency),
           ("training_loss", "Training and validation loss", training_loss))


def make_all(results: dict, out: Path) -> list[tuple[str, Path]]:
    """(title, path) of every figure that has data, in report order."""
    out.mkdir(parents=True, exist_ok=True)
    made = [(title, draw(results, out / f"{name}.png")) for name, title, draw in FIGURES]
    return [(t, p) for t, p in made if p]
