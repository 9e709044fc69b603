"""The pipeline's commands: prepare, train, evaluate, run (the whole suite), report, preferences, tune.

Each builds its typed config (options generated from its fields by cliopts.py), calls one stage
function and prints where the results went."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from .. import rundir, suitedir
from ..cliopts import options
from ..config import LaunchConfig
from ..core.errors import Interrupted, UserError
from ..core.io import check_out_dir
from ..data.config import PrepareConfig
from ..evaluate.config import EvalConfig
from ..pairs.config import PairsConfig
from ..report.config import ReportConfig
from ..suite.config import RunConfig
from ..suite.exitcodes import EXIT_CODES
from ..train import methods
from ..train.config import TrainConfig
from ..tune.config import TuneRunConfig
from .app import _num, _this_command, app, staged


@app.command()
@options(PrepareConfig, required=("out",))
def prepare(cfg: PrepareConfig):
    """Clean, redact, tag and split support logs into train/val/test JSONL files."""
    from ..data.prepare import cleaning_summary
    from ..data.prepare import prepare as run_prepare
    from ..data.split import PREPARE_REPORT, SPLITS

    report = run_prepare(cfg)
    s = report["splits"]
    typer.echo(f"kept {report['pairs_kept']} pairs ({report['dropped_total']} dropped) -> "
               f"train {s['train']['pairs']}, val {s['val']['pairs']}, test {s['test']['pairs']} "
               f"in {report['seconds']}s")
    typer.echo(cleaning_summary(report))
    typer.echo(f"wrote {', '.join(f'{s}.jsonl' for s in SPLITS)} and {PREPARE_REPORT} to {cfg.out}")


@app.command(help=f"Train one PEFT adapter ({methods.names()}) on a base model.\n\n"
                  "Ctrl-C stops after the current step and saves a checkpoint; `--resume` continues from it.")
@options(TrainConfig, LaunchConfig, yaml=True,
         flags={"fsdp": "--fsdp/--ddp", "gradient_checkpointing": "--gradient-checkpointing/--no-gradient-checkpointing",
                "from_run": "--from"})
def train(cfg: TrainConfig, launch: LaunchConfig):
    check_out_dir(cfg.out)  # before the heavy imports: a wrong --out fails at once
    from ..train.stage import preflight
    from ..train.stage import train as run_train

    summary = staged(lambda: run_train(cfg), cfg.out / rundir.SUMMARY, launch.nproc, cfg.device,
                     lambda: preflight(cfg, launch.nproc), launch_one=cfg.fsdp)
    if summary is None:
        return
    typer.echo(f"{cfg.variant}: {summary['steps']} steps in {summary['wall_time_s']}s, "
               f"train loss {_num(summary['first_train_loss'])} -> {_num(summary['final_train_loss'])}, "
               f"val loss {_num(summary['final_val_loss'])}, {summary['tokens_per_s']} tokens/s, "
               f"trainable {summary['trainable_params']:,} ({summary['trainable_pct']}%)")
    if summary.get("objective"):
        splits = summary["preference_splits"]
        typer.echo(f"{summary['objective']} on {summary['train_examples']} preference rows from {cfg.from_run}"
                   f"{'; WARNING: ' + str(splits['test']) + ' rows are test-split messages, so test scores of this run are not held out' if splits['test'] else ''}")
    typer.echo(f"wrote adapter, {rundir.CONFIG}, {rundir.LOSS} and {rundir.SUMMARY} to {cfg.out}")


@app.command()
@options(EvalConfig, LaunchConfig, required=("data",))
def evaluate(cfg: EvalConfig, launch: LaunchConfig):
    """Generate replies for held-out messages and score them (a run, or a baseline)."""
    if cfg.baseline:
        check_out_dir(cfg.out)  # before the heavy imports (a run's folder is checked once it reads as a run)
    from ..evaluate.stage import evaluate as run_eval
    from ..evaluate.stage import preflight

    try:
        m = staged(lambda: run_eval(cfg), suitedir.metrics_path(Path(cfg.run or cfg.out)), launch.nproc, cfg.device,
                   lambda: preflight(cfg))
    except Interrupted as e:  # name the command that resumes (the replies so far are on disk)
        raise Interrupted(f"{e}; resume with: {_this_command()}") from None
    if m is None:
        return
    from ..inference.options import decode_label
    from ..metrics.scores import headline_text

    decoded = f", {decode_label(m.get('decode'))} decoding" if m.get("generated", True) else ""
    typer.echo(f"{m['name']}: {headline_text(m)}  ({m['examples']} examples{decoded})")
    entry = Path(cfg.run or cfg.out)
    typer.echo(f"wrote {suitedir.metrics_path(entry)} and {suitedir.predictions_path(entry)}")


@app.command("run", help="The main job: prepare -> train every variant -> evaluate -> baselines -> compare -> report."
                         "\n\nEvery variant is validated before any trains. " + EXIT_CODES)
@options(RunConfig, LaunchConfig)
def run_cmd(cfg: RunConfig, launch: LaunchConfig):
    out = cfg.out
    check_out_dir(out)
    from ..core import distributed
    from ..suite.run import check_inputs, load_suite, preflight, preset_path, run_suite

    suite = load_suite(cfg.config or preset_path(cfg.preset),
                       {k: v for k, v in {"data": cfg.data, "model": cfg.model}.items() if v is not None})
    check_inputs(suite)
    if out.exists() and any(out.iterdir()) and not (cfg.resume or cfg.force or distributed.launched()):
        raise UserError(f"{out}: suite directory exists (use --resume to continue it or --force to start over)")
    fsdp = any(TrainConfig(**{**suite.defaults, **v}).fsdp for v in suite.expanded())
    try:
        results = staged(lambda: run_suite(suite, out, force=cfg.force, log=lambda m: typer.echo(m, err=True)),
                         out / suitedir.RESULTS, launch.nproc, suite.defaults.get("device", "auto"),
                         lambda: preflight(suite, launch.nproc), launch_one=fsdp)
    except Interrupted as e:  # the suite resumes with --resume, whatever stage was stopped
        command = _this_command() + ("" if cfg.resume or "--resume" in sys.argv else " --resume")
        raise Interrupted(f"{e} (the suite: {command} continues it)") from None
    if results is None:
        return
    from ..core.errors import RunFailed
    from ..report.verdict import summary_lines
    from ..suite.exitcodes import EntriesFailed

    for line in summary_lines(results["verdict"]):
        typer.echo(line)
    typer.echo(f"report: {out / suitedir.REPORT_HTML} and {out / suitedir.REPORT_MD}")
    if results["verdict"]["status"] != "ok":
        raise RunFailed(f"every entry of the suite failed (errors in {out / suitedir.REPORT_MD})")
    failed = results["verdict"].get("failed") or []
    if failed:  # the report is written; the exit status still says the suite is incomplete (also on --resume)
        raise EntriesFailed(f"{len(failed)} of {len(results['entries'])} entries failed: {', '.join(failed)} "
                            f"(errors in {out / suitedir.REPORT_MD}; fix and rerun with --resume)")


@app.command()
@options(ReportConfig, arguments=("suite",))
def report(cfg: ReportConfig):
    """Rebuild results.json, report.md and report.html from a suite directory."""
    out = cfg.suite
    if not out.is_dir():
        raise UserError(f"{out}: not a directory")
    if not suitedir.is_suite(out):
        raise UserError(f"{out}: not a suite directory (no {suitedir.STATUS} and no evaluated entry in "
                        f"{' or '.join(suitedir.KINDS.values())}); `supporttune run` makes one")
    check_out_dir(out, flag="")
    from ..report.build import build_results
    from ..report.render import render_report

    if cfg.rescore:
        from ..evaluate.stage import rescore as rescore_dir

        for entry in suitedir.entries(out):
            if suitedir.predictions_path(out / entry["dir"]).is_file():
                rescore_dir(suitedir.eval_dir(out / entry["dir"]))
                typer.echo(f"rescored {suitedir.eval_dir(out / entry['dir'])}")
    build_results(out)
    md, page = render_report(out)
    typer.echo(f"wrote {out / suitedir.RESULTS}, {md} and {page}")


@app.command()
@options(PairsConfig, required=("run", "out"))
def preferences(cfg: PairsConfig):
    """Automatic preference pairs: each training message's reference reply chosen over a worse sampled/baseline reply.

    With --feedback FILE: the pairs come from what users said to `serve` (POST /v1/feedback) about RUN's replies
    instead: each correction chosen over the reply served (--shape kto: thumbs up/down as labels too).
    """
    if cfg.feedback is not None:
        from ..pairs.feedback import export_feedback

        c = export_feedback(cfg)  # every check before the tokenizer loads
        what = "preference pairs (corrections)" if cfg.shape == "pairs" else "KTO rows (thumbs and corrections)"
        skipped = ", ".join(f"{m} {n}" for m, n in c["skipped_other_agents"].items())
        typer.echo(f"thumbs up in {cfg.feedback}: " + ", ".join(
            f"{m} {t['up']}/{t['up'] + t['down']} ({100 * t['up_share']:.0f}%)" for m, t in c["thumbs"].items()))
        typer.echo(f"wrote {c['rows']} {what} from {c['used']} of {c['records']} feedback records with {c['prompt']} "
                   f"to {cfg.out}" + (f"; {c['without_correction']} without a correction left out (--shape kto "
                                      f"uses them)" if c["without_correction"] else "")
                   + (f"; skipped records of other agents: {skipped}" if skipped else ""))
        return
    from ..pairs.auto import check, make_pairs

    check(cfg)  # before the model loads: the run, the data, the out file
    counts = make_pairs(cfg)
    typer.echo(f"wrote {counts['pairs']} preference pairs for {counts['messages']} training messages "
               f"({counts['candidates']} candidates; by source: "
               f"{', '.join(f'{k} {v}' for k, v in counts['by_source'].items())}) to {cfg.out}")


@app.command()
@options(TuneRunConfig)
def tune(cfg: TuneRunConfig):
    """Search hyperparameters with Optuna (TPE, median pruning on validation loss); each trial is a run directory."""
    check_out_dir(cfg.out)
    from ..tune.search import format_params, run_tune
    from ..tune.space import load_tune

    space = load_tune(cfg.config, {k: v for k, v in {"data": cfg.data, "model": cfg.model}.items() if v is not None})
    results = run_tune(space, cfg.out, cfg.trials, timeout=cfg.timeout, force=cfg.force,
                       log=lambda m: typer.echo(m, err=True), jobs=cfg.jobs)
    best = results["best"]
    if best:
        typer.echo(f"best: trial {best['number']} {results['objective']['metric']}={best['value']:.4f} "
                   f"{format_params(best['params'])}")
    typer.echo(f"wrote {cfg.out / 'tune_results.json'} and {cfg.out / 'tune_report.md'}")
