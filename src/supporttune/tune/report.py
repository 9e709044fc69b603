"""The results of a search: tune_results.json first, then tune_search.png and tune_report.md drawn from it.

Trial facts come from the study (Optuna's storage owns params, states, values and times) and from
each trial's run directory (through rundir: steps, validation examples, validation-loss curve).
The plot and the Markdown only format what the JSON holds.
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

from .. import rundir
from ..core.io import write_json
from ..core.provenance import provenance

PLOT = "tune_search.png"
REPORT = "tune_report.md"
STATES = ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING")
MIN_FOR_IMPORTANCE = 5  # complete trials before parameter importances are worth showing


def _trial(t, cfg, out: Path, cut: set[int]) -> dict:
    from .study import ALONE, OUT_OF_MEMORY, RETRY_OF, trial_dir

    run = trial_dir(out, t.number)
    summary = rundir.summary(run) or {}
    duration = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete and t.datetime_start else None
    row = {"number": t.number, "state": t.state.name, "interrupted": t.number in cut, "value": t.value,
           "params": cfg.decode(t.params), "duration_s": round(duration, 2) if duration is not None else None,
           "started": t.datetime_start.isoformat(timespec="seconds") if t.datetime_start else None,
           "dir": str(run.relative_to(out)) if run.is_dir() else None,
           "steps": summary.get("steps"), "val_examples": summary.get("val_examples"),
           "val_curve": [[r["step"], r["val_loss"]] for r in rundir.loss_log(run) if "val_loss" in r]}
    if t.state.name == "PRUNED":
        row["pruned_at_step"] = t.last_step
    for key in (RETRY_OF, ALONE, OUT_OF_MEMORY):  # OUT_OF_MEMORY: interrupted and queued again to run alone
        if key in t.user_attrs:
            row[key] = t.user_attrs[key]
    if "error" in t.user_attrs:
        row["error"] = t.user_attrs["error"]
    return row


def _importances(study, cfg) -> dict | None:
    """Optuna's default importance evaluator (PED-ANOVA on optuna 4+), once enough trials completed to mean something."""
    from optuna.trial import TrialState

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    varied = [k for k in cfg.search if len({repr(t.params.get(k)) for t in complete}) > 1]
    if len(complete) < MIN_FOR_IMPORTANCE or not varied:
        return None
    import optuna.importance  # imports scikit-learn: only when used

    try:
        return {k: round(float(v), 4) for k, v in optuna.importance.get_param_importances(study, params=varied).items()}
    except (RuntimeError, ValueError, ZeroDivisionError):  # too few distinct results to say
        return None


def build_results(study, cfg, out: Path, trials_requested: int) -> dict:
    from .study import STUDY_DB, finished, interrupted

    cut = interrupted(study)
    rows = [_trial(t, cfg, out, cut) for t in study.get_trials(deepcopy=False)]
    complete = [r for r in rows if r["state"] == "COMPLETE"]
    pick = min if cfg.direction == "minimize" else max
    best = pick(complete, key=lambda r: r["value"]) if complete else None
    counts = {s.lower(): sum(r["state"] == s and not r["interrupted"] for r in rows) for s in STATES}
    counts["interrupted"] = len(cut)
    counts["out_of_memory"] = sum(bool(r.get("out_of_memory")) for r in rows)  # of the interrupted: tried again alone
    counts["finished"] = len(finished(study))
    val_sizes = sorted({r["val_examples"] for r in rows if r["val_examples"] is not None})
    notes = []
    if len(val_sizes) > 1:
        notes.append(f"trials validated on different numbers of examples ({val_sizes}): pairs longer than max_length "
                     f"are skipped, and retrieval/history lengthen prompts; compare values with care")
    return {
        "name": cfg.name,
        "objective": {"metric": cfg.objective, "direction": cfg.direction,
                      "source": "final validation loss of training (reply tokens)" if cfg.objective == "val_loss"
                      else "evaluate on the validation split (settings in eval)"},
        "study": {"storage": STUDY_DB, "study_name": study.study_name,
                  "sampler": {"type": "TPESampler", **cfg.sampler.model_dump(), "reseeded": "seed + trial number"},
                  "pruner": {**cfg.pruner.model_dump(), "reports": "val_loss" if cfg.direction == "minimize" else "-val_loss"}},
        "search_space": {k: p.model_dump(exclude_none=True, exclude_defaults=True) | {"type": p.type}
                         for k, p in cfg.search.items()},
        "defaults": cfg.defaults, "eval": cfg.eval if cfg.objective != "val_loss" else {},
        "trials_requested": trials_requested, "counts": counts,
        "best": None if best is None else {"number": best["number"], "value": best["value"], "params": best["params"],
                                           "dir": best["dir"], "variant": {"name": f"tuned-{cfg.name}", **best["params"]}},
        "importances": _importances(study, cfg),
        "trials": rows, "notes": notes, "config_hash": cfg.digest(),
        "provenance": {**provenance(), "optuna": metadata.version("optuna")},
        "files": {"plot": PLOT, "report": REPORT},
    }


def plot(results: dict, path: Path) -> Path | None:
    """Objective per trial with the best so far; validation loss per trial; importances when known."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    from ..report.plots import save_figure

    rows = results["trials"]
    if not any(r["value"] is not None or r["val_curve"] for r in rows):
        return None
    imp = results.get("importances")
    fig, axes = plt.subplots(1, 3 if imp else 2, figsize=(15 if imp else 11, 4))
    ax = axes[0]
    metric, minimize = results["objective"]["metric"], results["objective"]["direction"] == "minimize"
    done = [r for r in rows if r["state"] == "COMPLETE"]
    ax.plot([r["number"] for r in done], [r["value"] for r in done], "o", color="C0", label="complete")
    pruned = [r for r in rows if r["state"] == "PRUNED" and r["val_curve"] and metric == "val_loss"]
    if pruned:
        ax.plot([r["number"] for r in pruned], [r["val_curve"][-1][1] for r in pruned], "x", color="C7",
                label="pruned (last val loss)")
    best, xs, ys = None, [], []
    for r in done:
        if best is None or (r["value"] < best if minimize else r["value"] > best):
            best = r["value"]
        xs.append(r["number"])
        ys.append(best)
    if xs:
        ax.step(xs, ys, where="post", color="C3", label="best so far")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_xlabel("trial")
    ax.set_ylabel(f"{metric} ({'lower' if minimize else 'higher'} is better)")
    ax.set_title(f"Search: {results['name']}")
    ax.legend(fontsize=7)
    ax = axes[1]
    for r in rows:
        if r["val_curve"]:
            steps, vals = zip(*r["val_curve"])
            style = "--" if r["state"] == "PRUNED" else "-"
            ax.plot(steps, vals, style, marker=".", color=f"C{r['number'] % 10}", label=f"trial {r['number']}")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("validation loss")
    ax.set_title("Validation loss per trial (dashed: pruned)")
    if len(rows) <= 12:
        ax.legend(fontsize=7, ncol=2)
    if imp:
        names = list(imp)[::-1]
        axes[2].barh(names, [imp[n] for n in names], color="C2")
        axes[2].set_title("Parameter importance")
    return save_figure(fig, path)


def _cell(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return "+".join(v) if isinstance(v, list) else str(v)


def markdown(results: dict, has_plot: bool) -> str:
    o, c = results["objective"], results["counts"]
    oom = (f"; {c['out_of_memory']} of them ran out of GPU memory next to other trials and are run alone"
           if c.get("out_of_memory") else "")
    lines = [f"# Hyperparameter search: {results['name']}", "",
             f"Objective: **{o['metric']}** ({o['direction']}; {o['source']}). "
             f"{c['finished']} of {results['trials_requested']} trials finished: {c['complete']} complete, "
             f"{c['pruned']} pruned, {c['fail']} failed; {c['interrupted']} interrupted (not counted; their "
             f"parameters are tried again{oom}).", ""]
    b = results["best"]
    if b:
        lines += [f"**Best: trial {b['number']}**, {o['metric']} = {b['value']:.4f}, in `{b['dir']}`: "
                  + ", ".join(f"{k}={_cell(v)}" for k, v in b["params"].items()), ""]
    if has_plot:
        lines += [f"![search]({results['files']['plot']})", ""]
    keys = list(results["search_space"])
    header = ["trial", "state", o["metric"], *keys, "steps", "seconds"]
    lines += ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]  # as many delimiter cells as headers
    for r in results["trials"]:
        state = r["state"].lower()
        if r["interrupted"]:
            state = "out of GPU memory" if r.get("out_of_memory") else "interrupted"
        if r.get("alone"):
            state += " (alone)"
        if r.get("pruned_at_step") is not None:
            state += f" @{r['pruned_at_step']}"
        lines.append(f"| {r['number']} | {state} | " + " | ".join(
            [_cell(r["value"]), *(_cell(r["params"].get(k)) for k in keys), _cell(r["steps"]), _cell(r["duration_s"])])
            + " |")
    if results.get("importances"):
        lines += ["", "Parameter importance: " + ", ".join(f"{k} {v:.2f}" for k, v in results["importances"].items())]
    errors = [r for r in results["trials"] if r.get("error")]
    if errors:
        lines += ["", "Failed trials:"] + [f"- trial {r['number']}: {r['error']}" for r in errors]
    lines += [f"- note: {n}" for n in results["notes"]]
    s = results["study"]
    lines += ["", f"Sampler: TPE (seed {s['sampler']['seed']} + trial number, {s['sampler']['n_startup_trials']} random "
                  f"start-up trials); pruner: {s['pruner']['type']} on {s['pruner']['reports']}. "
                  f"Study: `{s['storage']}`; data: `tune_results.json`.", ""]
    return "\n".join(lines)


def write_results(study, cfg, out: Path, trials_requested: int) -> dict:
    from .study import RESULTS

    results = build_results(study, cfg, out, trials_requested)
    write_json(out / RESULTS, results)
    has_plot = plot(results, out / PLOT) is not None
    (out / REPORT).write_text(markdown(results, has_plot))
    return results
