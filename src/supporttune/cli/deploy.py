"""The commands around a trained agent: chat, serve, export, rate, and bench."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..bench.config import BenchConfig
from ..cliopts import build, options
from ..core.errors import UserError
from ..core.io import check_out_dir
from ..export.config import ExportConfig
from ..rate.config import RateConfig
from ..serve.config import ChatConfig, ServeConfig
from .app import _check_out_file, _check_port_free, app


@app.command()
@options(ChatConfig, arguments=("run",))
def chat(cfg: ChatConfig):
    """Talk to a trained agent; each message is tagged and answered with the training prompt.

    In a terminal: arrow keys and history as in a shell; Ctrl-C cancels a reply, Ctrl-D or an empty
    line ends. Pipe messages in (one per line) to script it: `echo "Where is my parcel?" | supporttune chat RUN`.
    """
    from ..rundir import read_record

    read_record(cfg.run)  # a wrong RUN fails before torch is even imported
    from ..inference.agent import load_agent
    from ..serve.chat import chat_loop

    chat_loop(load_agent(cfg.run, device=cfg.device), cfg.brand, max_new_tokens=cfg.max_new_tokens,
              decode=cfg.decode_spec())


@app.command()
@options(ServeConfig, arguments=("run",))
def serve(cfg: ServeConfig):
    """Serve agents over HTTP: /v1/reply, /v1/chat/completions, /v1/completions, /v1/models, /v1/feedback, /health.

    Several runs: the request's model picks the agent (GET /v1/models); --split shares requests naming none.

    A system message is added to the agent's trained prompt (--system refuse: 400 instead).

    seed makes sampling reproducible; n > 1 with no temperature samples at temperature 1, as OpenAI does.
    """
    from ..rundir import read_record
    from ..serve.router import agent_names, parse_split

    records = [read_record(run) for run in cfg.run]  # a wrong RUN or a taken port fails before torch is imported
    try:
        parse_split(cfg.split, agent_names(cfg.run, [r.variant for r in records]))
    except ValueError as e:
        raise UserError(str(e)) from None
    _check_port_free(cfg.host, cfg.port)
    from ..serve.console import quiet_libraries

    quiet_libraries()
    from ..serve.agents import load_agents
    from ..serve.server import serve as run_server

    run_server(load_agents(cfg.run, cfg.device, tokenizer_only=cfg.backend is not None), cfg.host, cfg.port, cfg)


@app.command("export")
@options(ExportConfig, arguments=("run",))
def export_cmd(cfg: ExportConfig):
    """Export the agent to a folder that stands alone: the adapter (+ base by name), a merged checkpoint, or GGUF.

    Written beside --out and renamed when complete. The folder holds the prompt spec, the exemplar index, a chat
    template that renders the agent's system turn, and a README model card; `serve` and `chat` accept it.
    """
    check_out_dir(cfg.out)
    from ..export.checkpoint import export as run_export

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


@app.command()
@options(BenchConfig)
def bench(
    given: dict,
    scaling: Optional[str] = typer.Option(None, help="Process counts, e.g. 1,2,4: measure how DDP training throughput "
                                                     "scales (real `train --nproc N` runs; methods default to lora,qlora; "
                                                     "--repeats: runs per point, 3 by default)."),
    global_batch: Optional[int] = typer.Option(None, min=1, help="With --scaling: sequences per optimizer step, the "
                                                                 "same for every process count (default: 16 x the largest count)."),
    per_step: Optional[int] = typer.Option(None, min=1, help="With --speed: sequences per training step, one "
                                                             "micro-batch (default 16)."),
    force: bool = typer.Option(False, "--force", metavar="", help="Overwrite an existing --out file."),
    speed: Optional[str] = typer.Option(None, metavar="RUN|base", help="Evaluate RUN (or zero-shot on the random "
                                        "model: 'base') twice in two processes, cold then warm compile cache, and "
                                        "train --methods padded vs packed (tokens/s, MFU)."),
):
    """Measure the seed recipe against supporttune's fast path (training and generation), or multi-GPU scaling."""
    from ..bench import run_bench
    from ..bench.config import ScalingConfig, SpeedConfig

    out = Path(given["out"]) if given.get("out") is not None else None
    if speed is not None:
        foreign = sorted(k for k in given if k not in SpeedConfig.model_fields)
        if foreign:
            raise UserError(f"--speed takes no --{foreign[0].replace('_', '-')}")
        cfg = build(SpeedConfig, run=speed, **given, **({"per_step": per_step} if per_step else {}))
    elif per_step is not None:
        raise UserError("--per-step goes with --speed")
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
            from ..data.split import load_split

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
        from ..rate import export_votes

        _check_out_file(out, force, flag="--export-preferences")
        written, votes, prompt = export_votes(suite, out, cfg.prompt_from, cfg.export_shape)
        what = ("preference pairs (from {} decided votes; ties and both-bad are not pairs)" if cfg.export_shape == "pairs"
                else "KTO rows (from {} decided votes; flagged replies and losers undesirable)").format(votes)
        typer.echo(f"wrote {written} {what} with {prompt} to {out}")
        return
    if suite.is_dir():
        check_out_dir(suite, flag="")  # votes are appended to SUITE/ratings.jsonl as they are cast
    from ..rate.app import RatingSession
    from ..rate.app import serve as serve_rating

    try:
        session = RatingSession(suite, rater=cfg.rater, planned=cfg.planned, overlap=cfg.overlap,
                                scheduler=cfg.scheduler, pair_rule=cfg.pair_rule)
    except ValueError as e:
        raise UserError(str(e)) from None
    _check_port_free(cfg.host, cfg.port)
    pairs = session.suite.pairs
    typer.echo(f"{len(session.suite.entries)} entries, {len(pairs)} pairs, {sum(map(len, pairs.values()))} comparisons; "
               f"{len(session.store.votes)} earlier lines in {session.store.path}")
    typer.echo(f"rate at http://{cfg.host}:{cfg.port}/  (Ctrl-C stops; every vote is already on disk)")
    serve_rating(session, cfg.host, cfg.port, cfg.api_key)
