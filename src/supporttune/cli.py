"""The `supporttune` command: a thin layer that builds a typed config and calls one stage function.

Every option is generated from a config field (cliopts.py), so the flags, their help and their
defaults cannot drift from the code. Output locations are checked before any work. The console
script is ``supporttune.entry:main``, which turns errors into one line; this module only defines
the commands.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from . import rundir, suitedir
from .bench.config import BenchConfig
from .cliopts import App, build, options
from .config import LaunchConfig
from .core.errors import Interrupted, UserError
from .core.io import check_out_dir
from .data.config import PrepareConfig
from .evaluate.config import EvalConfig
from .export.config import ExportConfig
from .pairs.config import PairsConfig
from .rate.config import RateConfig
from .report.config import ReportConfig
from .serve.config import ChatConfig, ServeConfig
from .suite.config import RunConfig
from .suite.exitcodes import EXIT_CODES
from .train import methods
from .train.config import TrainConfig
from .tune.config import TuneRunConfig

app = App(
    name="supporttune",
    help="Fine-tune small open LLMs into customer-support reply agents, and prove which variant to ship.\n\n"
         "Typical flow: prepare -> train -> evaluate -> report, or all of it with `supporttune run`.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        from . import __version__

        typer.echo(__version__)
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", metavar="", is_eager=True, callback=_version,
                                       help="Print the version and exit.")) -> None:
    """Runs before every command (--version is handled as it is parsed): quiet libraries when progress is off."""
    from .core.progress import silence_libraries

    silence_libraries()


@app.command()
@options(PrepareConfig, required=("out",))
def prepare(cfg: PrepareConfig):
    """Clean, redact, tag and split support logs into train/val/test JSONL files."""
    from .data.prepare import cleaning_summary
    from .data.prepare import prepare as run_prepare
    from .data.split import PREPARE_REPORT, SPLITS

    report = run_prepare(cfg)
    s = report["splits"]
    typer.echo(f"kept {report['pairs_kept']} pairs ({report['dropped_total']} dropped) -> "
               f"train {s['train']['pairs']}, val {s['val']['pairs']}, test {s['test']['pairs']} "
               f"in {report['seconds']}s")
    typer.echo(cleaning_summary(report))
    typer.echo(f"wrote {', '.join(f'{s}.jsonl' for s in SPLITS)} and {PREPARE_REPORT} to {cfg.out}")


def staged(stage, result: Path, nproc: int, device: str, preflight, launch_one: bool = False) -> dict | None:
    """Run ``stage()`` here, or relaunch this very command as ``nproc`` workers and read ``result``.

    Returns the stage's result document to print, or None inside a worker (the launching process
    reports). One process runs in place, unless ``launch_one`` (FSDP needs the launcher even on one GPU).
    """
    from .core import distributed
    from .core.io import read_json

    if nproc < 1:
        raise UserError(f"--nproc must be at least 1 (got {nproc})")
    if distributed.launched():
        stage()
        return None
    if nproc == 1 and not launch_one:
        return stage()
    from .models.loading import pick_device

    preflight()
    distributed.launch(sys.argv[1:], nproc, pick_device(device))
    return read_json(result)


def _this_command() -> str:
    """The command line as typed, to show as the one that resumes."""
    import shlex

    return "supporttune " + shlex.join(sys.argv[1:])


def _num(x, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


@app.command(help=f"Train one PEFT adapter ({methods.names()}) on a base model.\n\n"
                  "Ctrl-C stops after the current step and saves a checkpoint; `--resume` continues from it.")
@options(TrainConfig, LaunchConfig, yaml=True,
         flags={"fsdp": "--fsdp/--ddp", "gradient_checkpointing": "--gradient-checkpointing/--no-gradient-checkpointing",
                "from_run": "--from"})
def train(cfg: TrainConfig, launch: LaunchConfig):
    check_out_dir(cfg.out)  # before the heavy imports: a wrong --out fails at once
    from .train.stage import preflight
    from .train.stage import train as run_train

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
    from .evaluate.stage import evaluate as run_eval
    from .evaluate.stage import preflight

    try:
        m = staged(lambda: run_eval(cfg), suitedir.metrics_path(Path(cfg.run or cfg.out)), launch.nproc, cfg.device,
                   lambda: preflight(cfg))
    except Interrupted as e:  # name the command that resumes (the replies so far are on disk)
        raise Interrupted(f"{e}; resume with: {_this_command()}") from None
    if m is None:
        return
    from .inference.options import decode_label
    from .metrics.scores import headline_text

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
    from .core import distributed
    from .suite.run import check_inputs, load_suite, preflight, preset_path, run_suite

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
    from .core.errors import RunFailed
    from .report.verdict import summary_lines
    from .suite.exitcodes import EntriesFailed

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
    from .report.build import build_results
    from .report.render import render_report

    if cfg.rescore:
        from .evaluate.stage import rescore as rescore_dir

        for entry in suitedir.entries(out):
            if suitedir.predictions_path(out / entry["dir"]).is_file():
                rescore_dir(suitedir.eval_dir(out / entry["dir"]))
                typer.echo(f"rescored {suitedir.eval_dir(out / entry['dir'])}")
    build_results(out)
    md, page = render_report(out)
    typer.echo(f"wrote {out / suitedir.RESULTS}, {md} and {page}")


@app.command()
@options(ChatConfig, arguments=("run",))
def chat(cfg: ChatConfig):
    """Talk to a trained agent; each message is tagged and answered with the training prompt.

    In a terminal: arrow keys and history as in a shell; Ctrl-C cancels a reply, Ctrl-D or an empty
    line ends. Pipe messages in (one per line) to script it: `echo "Where is my parcel?" | supporttune chat RUN`.
    """
    from .rundir import read_record

    read_record(cfg.run)  # a wrong RUN fails before torch is even imported
    from .inference.agent import load_agent
    from .serve.chat import chat_loop

    chat_loop(load_agent(cfg.run, device=cfg.device), cfg.brand, max_new_tokens=cfg.max_new_tokens,
              decode=cfg.decode_spec())


def _check_port_free(host: str, port: int) -> None:
    """Bind once before the model loads, so a taken port fails in milliseconds."""
    import socket

    try:
        with socket.create_server((host, port)):
            pass
    except OSError as e:
        raise UserError(f"cannot listen on {host}:{port} ({e.strerror or e}); choose another --port or --host") from None


@app.command()
@options(ServeConfig, arguments=("run",))
def serve(cfg: ServeConfig):
    """Serve agents over HTTP: /v1/reply, /v1/chat/completions, /v1/completions, /v1/models, /v1/feedback, /health.

    Several runs: the request's model picks the agent (GET /v1/models); --split shares requests naming none.

    A system message is added to the agent's trained prompt (--system refuse: 400 instead).

    seed makes sampling reproducible; n > 1 with no temperature samples at temperature 1, as OpenAI does.
    """
    from .rundir import read_record

    from .serve.router import agent_names, parse_split

    records = [read_record(run) for run in cfg.run]  # a wrong RUN or a taken port fails before torch is imported
    try:
        parse_split(cfg.split, agent_names(cfg.run, [r.variant for r in records]))
    except ValueError as e:
        raise UserError(str(e)) from None
    _check_port_free(cfg.host, cfg.port)
    from .serve.console import quiet_libraries

    quiet_libraries()
    from .serve.agents import load_agents
    from .serve.server import serve as run_server

    run_server(load_agents(cfg.run, cfg.device, tokenizer_only=cfg.backend is not None), cfg.host, cfg.port, cfg)


@app.command("export")
@options(ExportConfig, arguments=("run",))
def export_cmd(cfg: ExportConfig):
    """Export the agent to a folder that stands alone: the adapter (+ base by name), a merged checkpoint, or GGUF.

    Written beside --out and renamed when complete. The folder holds the prompt spec, the exemplar index, a chat
    template that renders the agent's system turn, and a README model card; `serve` and `chat` accept it.
    """
    check_out_dir(cfg.out)
    from .export.checkpoint import export as run_export

    report = run_export(cfg)
    if "qlora_drift" in report:
        d = report["qlora_drift"]
        typer.echo(f"QLoRA merged into a dequantized base: {d['identical_replies']}/{d['examples']} greedy replies "
                   f"identical to the 4-bit adapter's (word agreement {d['word_agreement']:.2%})")
    if "gguf" in report:
        g = report["gguf"]
        c = g["logits_check"]
        typer.echo(f"GGUF {g['file']} ({g['dtype']}, {g['bytes'] / 2**20:.1f} MiB): logits vs the merged checkpoint on "
                   f"{c['prompts']} test prompts max |diff| {c['max_abs_diff']:.4g}, mean {c['mean_abs_diff']:.4g}"
                   + ("; Ollama Modelfile written" if g.get("modelfile") else ""))
    what = "GGUF + merged model" if cfg.format == "gguf" else "merged model" if cfg.merge else "adapter"
    typer.echo(f"wrote {what} to {cfg.out} (README.md: how to run it)")


def _check_out_file(out: Path | None, force: bool, flag: str = "--out") -> None:
    """An output file: not a directory, not overwritten unless --force, in a writable folder."""
    if out is None:
        return
    if out.is_dir():
        raise UserError(f"{out}: is a directory; give a file path for {flag}")
    if out.exists() and not force:
        raise UserError(f"{out}: exists (use --force to overwrite it)")
    check_out_dir(out.parent, flag)


@app.command()
@options(BenchConfig)
def bench(
    given: dict,
    scaling: Optional[str] = typer.Option(None, help="Process counts, e.g. 1,2,4: measure how DDP training throughput "
                                                     "scales (real `train --nproc N` runs; methods default to lora,qlora; "
                                                     "--repeats: runs per point, 3 by default)."),
    global_batch: Optional[int] = typer.Option(None, min=1, help="With --scaling: sequences per optimizer step, the "
                                                                 "same for every process count (default: 16 x the largest count)."),
    force: bool = typer.Option(False, "--force", metavar="", help="Overwrite an existing --out file."),
    speed: Optional[str] = typer.Option(None, metavar="RUN|base", help="Evaluate RUN (or zero-shot on the random "
                                        "model: 'base') twice in two processes, cold then warm compile cache, and "
                                        "train --methods padded vs packed (tokens/s, MFU)."),
):
    """Measure the seed recipe against supporttune's fast path (training and generation), or multi-GPU scaling."""
    from .bench import run_bench
    from .bench.config import ScalingConfig, SpeedConfig

    out = Path(given["out"]) if given.get("out") is not None else None
    if speed is not None:
        foreign = sorted(k for k in given if k not in SpeedConfig.model_fields)
        if foreign:
            raise UserError(f"--speed takes no --{foreign[0].replace('_', '-')}")
        cfg = build(SpeedConfig, run=speed, **given)
    elif scaling is not None:
        foreign = sorted(k for k in given if k not in ScalingConfig.model_fields)
        if foreign:
            raise UserError(f"--scaling measures training throughput only; it takes no --{foreign[0].replace('_', '-')}")
        cfg = build(ScalingConfig, processes=scaling, global_batch=global_batch, **given)
    else:
        cfg = build(BenchConfig, **given)  # flags given win over --quick
        if not (cfg.training or cfg.generation):
            raise UserError("--no-training with --no-generation leaves nothing to measure")
        if cfg.data != "builtin":
            from .data.split import load_split

            load_split(Path(cfg.data), "train")  # before the tokenizer and the model are built
    _check_out_file(out, force)
    run_bench(cfg, log=typer.echo)


@app.command()
@options(RateConfig, arguments=("suite",))
def rate(cfg: RateConfig, force: bool = typer.Option(False, "--force", metavar="",
                                                     help="Overwrite an existing --export-preferences file.")):
    """Blind side-by-side rating of two entries' replies (keys 1-4); `report` then adds a Human preference section."""
    suite, out = cfg.suite, cfg.export_preferences
    if cfg.prompt_from is not None and out is None:
        raise UserError("--prompt-from goes with --export-preferences")
    if out is not None:
        from .rate import export_votes

        _check_out_file(out, force, flag="--export-preferences")
        written, votes, prompt = export_votes(suite, out, cfg.prompt_from, cfg.export_shape)
        what = ("preference pairs (from {} decided votes; ties and both-bad are not pairs)" if cfg.export_shape == "pairs"
                else "KTO rows (from {} decided votes; flagged replies and losers undesirable)").format(votes)
        typer.echo(f"wrote {written} {what} with {prompt} to {out}")
        return
    if suite.is_dir():
        check_out_dir(suite, flag="")  # votes are appended to SUITE/ratings.jsonl as they are cast
    from .rate.app import RatingSession
    from .rate.app import serve as serve_rating

    try:
        session = RatingSession(suite, rater=cfg.rater, planned=cfg.planned, overlap=cfg.overlap,
                                scheduler=cfg.scheduler)
    except ValueError as e:
        raise UserError(str(e)) from None
    _check_port_free(cfg.host, cfg.port)
    pairs = session.suite.pairs
    typer.echo(f"{len(session.suite.entries)} entries, {len(pairs)} pairs, {sum(map(len, pairs.values()))} comparisons; "
               f"{len(session.store.votes)} earlier lines in {session.store.path}")
    typer.echo(f"rate at http://{cfg.host}:{cfg.port}/  (Ctrl-C stops; every vote is already on disk)")
    serve_rating(session, cfg.host, cfg.port, cfg.api_key)


@app.command()
@options(PairsConfig, required=("run", "out"))
def preferences(cfg: PairsConfig):
    """Automatic preference pairs: each training message's reference reply chosen over a worse sampled/baseline reply."""
    from .pairs.auto import check, make_pairs

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
    from .tune.search import format_params, run_tune
    from .tune.space import load_tune

    space = load_tune(cfg.config, {k: v for k, v in {"data": cfg.data, "model": cfg.model}.items() if v is not None})
    results = run_tune(space, cfg.out, cfg.trials, timeout=cfg.timeout, force=cfg.force,
                       log=lambda m: typer.echo(m, err=True))
    best = results["best"]
    if best:
        typer.echo(f"best: trial {best['number']} {results['objective']['metric']}={best['value']:.4f} "
                   f"{format_params(best['params'])}")
    typer.echo(f"wrote {cfg.out / 'tune_results.json'} and {cfg.out / 'tune_report.md'}")
