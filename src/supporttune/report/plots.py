"""Report figures (matplotlib, Agg): loss curves, metric bars with CI whiskers, trade-offs."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

BAR_METRICS = ("rougeL", "bleu", "chrf", "semantic_sim")


def _ok(results: dict) -> list[dict]:
    return [e for e in results["entries"] if "metrics" in e]


def loss_curves(results: dict, path: Path) -> Path | None:
    runs = [e for e in _ok(results) if e.get("loss")]
    if not runs:
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, e in enumerate(runs):
        color = f"C{i % 10}"
        tr = [(r["step"], r["train_loss"]) for r in e["loss"] if "train_loss" in r]
        va = [(r["step"], r["val_loss"]) for r in e["loss"] if "val_loss" in r]
        if tr:
            ax.plot(*zip(*tr), color=color, label=f"{e['name']} train")
        if va:
            ax.plot(*zip(*va), "o--", color=color, label=f"{e['name']} val")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (reply tokens)")
    ax.set_title("Training and validation loss")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def metric_bars(results: dict, path: Path) -> Path | None:
    entries = _ok(results)
    if not entries:
        return None
    fig, axes = plt.subplots(1, len(BAR_METRICS), figsize=(4 * len(BAR_METRICS), 4.2))
    names = [e["name"] for e in entries]
    colors = ["C0" if e["kind"] == "variant" else "C7" for e in entries]
    for ax, m in zip(axes, BAR_METRICS):
        vals = [e["metrics"].get(m) or 0 for e in entries]
        lo = [max(0, v - (e["ci"].get(m) or [v, v])[0]) for v, e in zip(vals, entries)]
        hi = [max(0, (e["ci"].get(m) or [v, v])[1] - v) for v, e in zip(vals, entries)]
        ax.bar(range(len(vals)), vals, yerr=[lo, hi], color=colors, capsize=3)
        ax.set_xticks(range(len(vals)), names, rotation=60, ha="right", fontsize=7)
        ax.set_title(f"{m} (95% CI)")
    fig.suptitle("Quality per variant (blue) and baseline (grey)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def tradeoff(results: dict, path: Path) -> Path | None:
    entries = [e for e in _ok(results) if e["metrics"].get("latency_p50_s")]
    if not entries:
        return None
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for e in entries:
        m = e["metrics"]
        size = 30 + 25 * math.log10(1 + (m.get("trainable_params") or 0))
        ax.scatter(m["latency_p50_s"], m["rougeL"], s=size, color="C0" if e["kind"] == "variant" else "C7", alpha=0.7)
        ax.annotate(f"{e['name']}\n{(m.get('trainable_pct') or 0):.3g}% trainable", (m["latency_p50_s"], m["rougeL"]),
                    fontsize=7, xytext=(4, 4), textcoords="offset points")
    ax.set_xlabel("batch-1 latency p50 (s)")
    ax.set_ylabel("ROUGE-L F1")
    ax.set_title("Quality vs latency (marker size ~ log trainable params)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def make_all(results: dict, out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    figs = {"loss": loss_curves(results, out / "loss_curves.png"), "bars": metric_bars(results, out / "metric_bars.png"),
            "tradeoff": tradeoff(results, out / "tradeoff.png")}
    return {k: v for k, v in figs.items() if v}
