"""The `supporttune` command: a thin layer that builds a typed config and calls one stage function.

Help texts come from the config fields, so `--help` and the code cannot drift apart.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from pydantic import ValidationError

from .config import BenchConfig, EvalConfig, PrepareConfig, TrainConfig, validation_message
from .errors import UserError

app = typer.Typer(
    name="supporttune",
    help="Fine-tune small open LLMs into customer-support reply agents, and prove which variant to ship.\n\n"
         "Typical flow: prepare -> train -> evaluate -> report, or all of it with `supporttune run`.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _root(version: bool = typer.Option(False, "--version", help="Print the version and exit.")) -> None:
    if version:
        from . import __version__

        typer.echo(__version__)
        raise typer.Exit()


def h(config: type, field: str) -> str:
    """Help text of a config field (its description plus default)."""
    info = config.model_fields[field]
    default = info.default
    return f"{info.description} [default: {default}]" if default not in (None, False) else str(info.description)


def build(config: type, **values):
    """Construct a config from CLI values (None = not given), turning validation errors into one line."""
    given = {k: v for k, v in values.items() if v is not None}
    try:
        return config(**given)
    except ValidationError as e:
        raise UserError(validation_message(e)) from None


@app.command()
def prepare(
    input: str = typer.Option("builtin", "--input", "-i", help=h(PrepareConfig, "input")),
    format: str = typer.Option("auto", "--format", "-f", help=h(PrepareConfig, "format")),
    out: Path = typer.Option(..., "--out", "-o", help=h(PrepareConfig, "out")),
    max_pairs: Optional[int] = typer.Option(None, help=h(PrepareConfig, "max_pairs")),
    val_frac: float = typer.Option(0.1, help=h(PrepareConfig, "val_frac")),
    test_frac: float = typer.Option(0.1, help=h(PrepareConfig, "test_frac")),
    seed: int = typer.Option(42, help=h(PrepareConfig, "seed")),
    sentiment: str = typer.Option("vader", help=h(PrepareConfig, "sentiment")),
    input_col: str = typer.Option("input", help=h(PrepareConfig, "input_col")),
    output_col: str = typer.Option("output", help=h(PrepareConfig, "output_col")),
    brand_col: str = typer.Option("brand", help=h(PrepareConfig, "brand_col")),
    force: bool = typer.Option(False, "--force", help=h(PrepareConfig, "force")),
):
    """Clean, redact, tag and split support logs into train/val/test JSONL files."""
    from .data.prepare import prepare as run_prepare

    cfg = build(PrepareConfig, input=input, format=format, out=out, max_pairs=max_pairs, val_frac=val_frac,
                test_frac=test_frac, seed=seed, sentiment=sentiment, input_col=input_col, output_col=output_col,
                brand_col=brand_col, force=force)
    report = run_prepare(cfg)
    s = report["splits"]
    typer.echo(f"kept {report['pairs_kept']} pairs ({report['dropped_total']} dropped) -> "
               f"train {s['train']['pairs']}, val {s['val']['pairs']}, test {s['test']['pairs']} "
               f"in {report['seconds']}s")
    typer.echo(f"wrote {cfg.out}/{{train,val,test}}.jsonl and {cfg.out}/prepare_report.json")


NPROC_HELP = ("Processes to spread the work over (one per GPU; on CPU, gloo processes). Launched through torch's "
              "elastic launcher (torchrun); training uses DDP (or FSDP with --fsdp), the global batch stays "
              "batch_size x grad_accum. [default: 1]")


def staged(stage, result: Path, nproc: int, device: str, preflight, launch_one: bool = False) -> dict | None:
    """Run ``stage()`` here, or relaunch this very command as ``nproc`` workers and read ``result``.

    Returns the stage's result document to print, or None inside a worker (the launching process
    reports). One process runs in place, unless ``launch_one`` (FSDP needs the launcher even on one GPU).
    """
    from . import distributed
    from .io import read_json

    if nproc < 1:
        raise UserError(f"--nproc must be at least 1 (got {nproc})")
    if distributed.launched():
        stage()
        return None
    if nproc == 1 and not launch_one:
        return stage()
    from .models import pick_device

    preflight()
    distributed.launch(sys.argv[1:], nproc, pick_device(device))
    return read_json(result)


def load_yaml(path: Optional[Path]) -> dict:
    from .io import read_yaml_mapping

    return read_yaml_mapping(path) if path is not None else {}


@app.command()
def train(
    data: Optional[Path] = typer.Option(None, "--data", "-d", help=h(TrainConfig, "data")),
    method: Optional[str] = typer.Option(None, "--method", "-m", help=h(TrainConfig, "method")),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help=h(TrainConfig, "out")),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML file of train fields; flags override it."),
    model: Optional[str] = typer.Option(None, help=h(TrainConfig, "model")),
    name: Optional[str] = typer.Option(None, help=h(TrainConfig, "name")),
    r: Optional[int] = typer.Option(None, help=h(TrainConfig, "r")),
    alpha: Optional[int] = typer.Option(None, help=h(TrainConfig, "alpha")),
    dropout: Optional[float] = typer.Option(None, help=h(TrainConfig, "dropout")),
    targets: Optional[str] = typer.Option(None, help=h(TrainConfig, "targets")),
    virtual_tokens: Optional[int] = typer.Option(None, help=h(TrainConfig, "virtual_tokens")),
    prompt_init: Optional[str] = typer.Option(None, help=h(TrainConfig, "prompt_init")),
    init_text: Optional[str] = typer.Option(None, help=h(TrainConfig, "init_text")),
    epochs: Optional[float] = typer.Option(None, help=h(TrainConfig, "epochs")),
    max_steps: Optional[int] = typer.Option(None, help=h(TrainConfig, "max_steps")),
    lr: Optional[float] = typer.Option(None, help=h(TrainConfig, "lr")),
    batch_size: Optional[int] = typer.Option(None, help=h(TrainConfig, "batch_size")),
    grad_accum: Optional[int] = typer.Option(None, help=h(TrainConfig, "grad_accum")),
    max_length: Optional[int] = typer.Option(None, help=h(TrainConfig, "max_length")),
    prompt_format: Optional[str] = typer.Option(None, help=h(TrainConfig, "prompt_format")),
    tags: Optional[bool] = typer.Option(None, "--tags/--no-tags", help=h(TrainConfig, "tags")),
    precision: Optional[str] = typer.Option(None, help=h(TrainConfig, "precision")),
    gradient_checkpointing: Optional[bool] = typer.Option(None, "--gradient-checkpointing/--no-gradient-checkpointing",
                                                          help=h(TrainConfig, "gradient_checkpointing")),
    max_train_samples: Optional[int] = typer.Option(None, help=h(TrainConfig, "max_train_samples")),
    seed: Optional[int] = typer.Option(None, help=h(TrainConfig, "seed")),
    device: Optional[str] = typer.Option(None, help=h(TrainConfig, "device")),
    nproc: int = typer.Option(1, help=NPROC_HELP),
    fsdp: Optional[bool] = typer.Option(None, "--fsdp/--ddp", help=h(TrainConfig, "fsdp")),
    resume: bool = typer.Option(False, "--resume", help=h(TrainConfig, "resume")),
    force: bool = typer.Option(False, "--force", help=h(TrainConfig, "force")),
):
    """Train one PEFT adapter (qlora, lora, dora, ia3, prompt-tuning, prefix-tuning) on a base model."""
    from .train import preflight
    from .train import train as run_train

    flags = dict(data=data, method=method, out=out, model=model, name=name, r=r, alpha=alpha, dropout=dropout,
                 targets=targets, virtual_tokens=virtual_tokens, prompt_init=prompt_init, init_text=init_text,
                 epochs=epochs, max_steps=max_steps, lr=lr, batch_size=batch_size, grad_accum=grad_accum,
                 max_length=max_length, prompt_format=prompt_format, tags=tags, precision=precision,
                 gradient_checkpointing=gradient_checkpointing, max_train_samples=max_train_samples, seed=seed,
                 device=device, fsdp=fsdp, resume=resume or None, force=force or None)
    cfg = build(TrainConfig, **{**load_yaml(config), **{k: v for k, v in flags.items() if v is not None}})
    summary = staged(lambda: run_train(cfg), cfg.out / "train_summary.json", nproc, cfg.device,
                     lambda: preflight(cfg, nproc), launch_one=cfg.fsdp)
    if summary is None:
        return
    typer.echo(f"{cfg.variant}: {summary['steps']} steps in {summary['wall_time_s']}s, "
               f"train loss {summary['first_train_loss']} -> {summary['final_train_loss']}, "
               f"val loss {summary['final_val_loss']}, {summary['tokens_per_s']} tokens/s, "
               f"trainable {summary['trainable_params']:,} ({summary['trainable_pct']}%)")
    typer.echo(f"wrote adapter, config.yaml, loss.jsonl and train_summary.json to {cfg.out}")


@app.command()
def evaluate(
    run: Optional[Path] = typer.Option(None, "--run", "-r", help=h(EvalConfig, "run")),
    baseline: Optional[str] = typer.Option(None, "--baseline", "-b", help=h(EvalConfig, "baseline")),
    data: Path = typer.Option(..., "--data", "-d", help=h(EvalConfig, "data")),
    split: str = typer.Option("test", help=h(EvalConfig, "split")),
    limit: Optional[int] = typer.Option(None, help=h(EvalConfig, "limit")),
    model: str = typer.Option("smollm2-135m", help=h(EvalConfig, "model")),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help=h(EvalConfig, "out")),
    max_new_tokens: int = typer.Option(64, help=h(EvalConfig, "max_new_tokens")),
    batch_size: Optional[int] = typer.Option(None, help=h(EvalConfig, "batch_size")),
    latency_samples: int = typer.Option(10, help=h(EvalConfig, "latency_samples")),
    prompt_format: str = typer.Option("chat", help=h(EvalConfig, "prompt_format")),
    tags: bool = typer.Option(True, "--tags/--no-tags", help=h(EvalConfig, "tags")),
    semantic: bool = typer.Option(True, "--semantic/--no-semantic", help=h(EvalConfig, "semantic")),
    device: str = typer.Option("auto", help=h(EvalConfig, "device")),
    nproc: int = typer.Option(1, help="Processes to shard generation over (one per GPU); predictions are gathered "
                                      "in order and scored once. [default: 1]"),
    force: bool = typer.Option(False, "--force", help=h(EvalConfig, "force")),
):
    """Generate replies for held-out messages and score them (a run, or a baseline)."""
    from .evaluate import evaluate as run_eval
    from .evaluate import preflight

    cfg = build(EvalConfig, run=run, baseline=baseline, data=data, split=split, limit=limit, model=model, out=out,
                max_new_tokens=max_new_tokens, batch_size=batch_size, latency_samples=latency_samples,
                prompt_format=prompt_format, tags=tags, semantic=semantic, device=device, force=force)
    m = staged(lambda: run_eval(cfg), Path(cfg.run or cfg.out) / "eval" / "metrics.json", nproc, cfg.device,
               lambda: preflight(cfg))
    if m is None:
        return
    typer.echo(f"{m['name']}: BLEU {m['bleu']:.2f}  ROUGE-L {m['rougeL']:.2f}  chrF {m['chrf']:.2f}  "
               f"SemSim {m['semantic_sim'] if m['semantic_sim'] is None else round(m['semantic_sim'], 3)}  "
               f"({m['examples']} examples)")
    typer.echo(f"wrote {(cfg.run or cfg.out)}/eval/metrics.json and predictions.jsonl")


@app.command("run")
def run_cmd(
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="Suite YAML (see src/supporttune/configs/)."),
    preset: Optional[str] = typer.Option(None, help="quick (embedded demo), full (seed variants), seed-recipe."),
    data: Optional[str] = typer.Option(None, help="Raw data file, 'builtin', or a prepared directory (overrides the config)."),
    model: Optional[str] = typer.Option(None, help="Base model for every variant (overrides the config)."),
    out: Path = typer.Option(Path("runs/suite"), "--out", "-o", help="Suite directory."),
    nproc: int = typer.Option(1, help=NPROC_HELP),
    resume: bool = typer.Option(False, "--resume", help="Continue a suite in an existing directory (finished entries are skipped)."),
    force: bool = typer.Option(False, "--force", help="Delete an existing suite directory first."),
):
    """The main job: prepare -> train every variant -> evaluate -> baselines -> compare -> report."""
    from . import distributed
    from .suite import load_suite, preflight, preset_path, run_suite

    if config and preset:
        raise UserError("give --config or --preset, not both")
    path = config or preset_path(preset or "quick")
    cfg = load_suite(path, {k: v for k, v in {"data": data, "model": model}.items() if v is not None})
    if out.exists() and any(out.iterdir()) and not (resume or force or distributed.launched()):
        raise UserError(f"{out}: suite directory exists (use --resume to continue it or --force to start over)")
    fsdp = any(TrainConfig(**{**cfg.defaults, **v}).fsdp for v in cfg.expanded())
    results = staged(lambda: run_suite(cfg, out, force=force, log=lambda m: typer.echo(m, err=True)),
                     out / "results.json", nproc, cfg.defaults.get("device", "auto"), lambda: preflight(cfg, nproc),
                     launch_one=fsdp)
    if results is None:
        return
    typer.echo(f"best variant: {results['best_variant']} (by ROUGE-L); report: {out / 'report.html'} and {out / 'report.md'}")


@app.command()
def report(
    out: Path = typer.Argument(..., help="Suite directory (with variants/ and baselines/)."),
    rescore: bool = typer.Option(False, "--rescore", help="Recompute every entry's scores from its predictions first."),
):
    """Rebuild results.json, report.md and report.html from a suite directory."""
    from .report.build import build_results
    from .report.render import render_report

    if not out.is_dir():
        raise UserError(f"{out}: not a directory")
    if rescore:
        from .evaluate import rescore as rescore_dir

        for eval_dir in sorted(out.glob("*/*/eval")):
            if (eval_dir / "predictions.jsonl").is_file():
                rescore_dir(eval_dir, EvalConfig(baseline="constant", out=eval_dir.parent))
                typer.echo(f"rescored {eval_dir}")
    build_results(out)
    md, page = render_report(out)
    typer.echo(f"wrote {out / 'results.json'}, {md} and {page}")


@app.command()
def chat(
    run: Path = typer.Argument(..., help="Trained run directory."),
    brand: Optional[str] = typer.Option(None, help="The company answering (as in training data)."),
    max_new_tokens: int = typer.Option(64, help="Longest reply, in tokens."),
    device: str = typer.Option("auto", help="cpu, cuda or auto."),
):
    """Talk to a trained agent; each message is tagged and answered with the training prompt.

    Pipe messages in (one per line) to script it: `echo "Where is my parcel?" | supporttune chat RUN`.
    """
    from .chat import chat_loop
    from .generate import load_agent

    chat_loop(load_agent(run, device=device), brand, max_new_tokens=max_new_tokens)


@app.command()
def serve(
    run: Path = typer.Argument(..., help="Trained run directory."),
    host: str = typer.Option("127.0.0.1", help="Bind address (loopback by default)."),
    port: int = typer.Option(8000, help="Port."),
    api_key: Optional[str] = typer.Option(None, envvar="SUPPORTTUNE_API_KEY", help="Require this key (Bearer token)."),
    max_batch: int = typer.Option(16, min=1, help="Most requests answered by one generate call."),
    max_wait_ms: float = typer.Option(10.0, min=0, help="How long a request waits for others to batch with."),
    max_new_tokens: int = typer.Option(64, min=1, help="Default reply budget (requests may ask for less or more)."),
    no_batching: bool = typer.Option(False, "--no-batching", help="Answer requests one at a time."),
    batcher: str = typer.Option("auto", help="window: queue requests for --max-wait-ms, one engine call per batch; "
                                             "continuous: transformers' continuous batching for greedy requests; "
                                             "auto: continuous on a CPU, window on a GPU."),
    device: str = typer.Option("auto", help="cpu, cuda or auto."),
):
    """Serve the agent over HTTP: /v1/reply, OpenAI-compatible /v1/chat/completions (streaming too), /v1/models, /health."""
    from .generate import load_agent
    from .serve import ServeOptions
    from .serve import serve as run_server

    if batcher not in ("auto", "window", "continuous"):
        raise UserError(f"--batcher must be auto, window or continuous (got '{batcher}')")
    agent = load_agent(run, device=device)
    run_server(agent, host, port, ServeOptions(api_key=api_key, max_batch=max_batch, max_wait_ms=max_wait_ms,
                                               max_new_tokens=max_new_tokens, batching=not no_batching, batcher=batcher))


@app.command("export")
def export_cmd(
    run: Path = typer.Argument(..., help="Trained run directory."),
    out: Path = typer.Option(..., "--out", "-o", help="Export directory."),
    merge: bool = typer.Option(False, "--merge", help="Merge LoRA weights into a bf16 copy of the base."),
    data: Optional[Path] = typer.Option(None, help="Data for the QLoRA drift check (default: the run's data)."),
    force: bool = typer.Option(False, "--force", help="Overwrite a non-empty export directory."),
):
    """Export the adapter (+ base reference), or a merged standard HF checkpoint."""
    from .export import export as run_export

    report = run_export(run, out, merge=merge, force=force, data=data)
    if "qlora_drift" in report:
        d = report["qlora_drift"]
        typer.echo(f"QLoRA merged into a dequantized base: {d['identical_replies']}/{d['examples']} greedy replies "
                   f"identical to the 4-bit adapter's (word agreement {d['word_agreement']:.2%})")
    typer.echo(f"wrote {'merged model' if merge else 'adapter'} to {out}")


@app.command()
def bench(
    model: str = typer.Option("tinyllama-arch", help=h(BenchConfig, "model")),
    methods: str = typer.Option("qlora,lora,prompt-tuning", help=h(BenchConfig, "methods")),
    device: str = typer.Option("auto", help=h(BenchConfig, "device")),
    data: str = typer.Option("builtin", help=h(BenchConfig, "data")),
    tokenizer: Optional[str] = typer.Option(None, help=h(BenchConfig, "tokenizer")),
    steps: Optional[int] = typer.Option(None, help=h(BenchConfig, "steps")),
    warmup: Optional[int] = typer.Option(None, help=h(BenchConfig, "warmup")),
    compile: bool = typer.Option(False, "--compile", help=h(BenchConfig, "compile")),
    liger: bool = typer.Option(False, "--liger", help=h(BenchConfig, "liger")),
    static_cache: bool = typer.Option(False, "--static-cache", help=h(BenchConfig, "static_cache")),
    no_generation: bool = typer.Option(False, "--no-generation", help="Skip the generation benchmark."),
    no_training: bool = typer.Option(False, "--no-training", help="Skip the training benchmark."),
    quick: bool = typer.Option(False, "--quick", help="Tiny random model, few steps: checks the harness in under a minute on a CPU."),
    scaling: Optional[str] = typer.Option(None, help="Process counts, e.g. 1,2,4: measure how DDP training throughput "
                                                     "scales (real `train --nproc N` runs; methods default to lora,qlora)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help=h(BenchConfig, "out")),
):
    """Measure the seed recipe against supporttune's fast path (training and generation), or multi-GPU scaling."""
    from .bench_run import run_bench

    if out is not None and out.exists() and out.is_dir():
        raise UserError(f"{out}: is a directory; give a JSON file path")
    if scaling is not None:
        from .bench_scale import run_scaling
        from .models import pick_device

        try:
            counts = [int(x) for x in scaling.split(",") if x.strip()]
        except ValueError:
            raise UserError(f"--scaling takes comma-separated process counts, e.g. 1,2,4 (got '{scaling}')") from None
        chosen = build(BenchConfig, methods="lora,qlora" if methods == "qlora,lora,prompt-tuning" else methods).methods
        run_scaling(counts, chosen, "tiny-arch" if quick else model, data, pick_device(device), steps or (6 if quick else 30),
                    4 if quick else 16, out, tokenizer, repeats=1 if quick else 3, log=typer.echo)
        return
    values = dict(model=model, methods=methods, device=device, data=data, tokenizer=tokenizer, steps=steps, warmup=warmup,
                  compile=compile, liger=liger, static_cache=static_cache, generation=not no_generation, out=out,
                  training=not no_training)
    if quick:
        values.update(model="tiny-arch" if model == "tinyllama-arch" else model, steps=steps or 2, warmup=warmup or 1, repeats=1,
                      new_tokens=16, seed_loop_samples=4)
    run_bench(build(BenchConfig, **values), log=typer.echo)


from .entry import main  # noqa: E402  (the console script `supporttune` = supporttune.cli:main)


if __name__ == "__main__":
    main()
