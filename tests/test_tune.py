"""`supporttune tune`: config checks, a small search on the tiny model, resume (more trials, Ctrl-C, a killed
process), pruning, a generation objective, and the sampler drawing the same trials resumed or not."""

import json
import os
import signal
from pathlib import Path

import pytest
import yaml
from transformers import TrainerCallback

from supporttune.core.errors import Interrupted, UserError
from supporttune.tune.study import INTERRUPTED, trial_dir
from supporttune.tune.search import open_study, run_tune
from supporttune.tune.space import TuneConfig, load_tune

CONFIGS = Path(__file__).resolve().parents[1] / "src" / "supporttune" / "configs"


def _doc(model, data, **over) -> dict:
    doc = {"name": "t", "data": str(data),
           "defaults": {"model": str(model), "method": "lora", "max_steps": 2, "batch_size": 2, "grad_accum": 1,
                        "device": "cpu", "max_train_samples": 8, "max_val_samples": 2, "max_length": 192,
                        "logging_steps": 1, "save_steps": 1},
           "search": {"lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
                      "r": {"type": "categorical", "choices": [2, 4]},
                      "targets": {"type": "categorical", "choices": [["q_proj", "v_proj"], ["q_proj", "k_proj", "v_proj"]]}},
           "sampler": {"seed": 0, "n_startup_trials": 2},
           "pruner": {"type": "median", "n_startup_trials": 1, "report_every": 1}}
    return {**doc, **over}


def test_shipped_tune_config_validates():
    cfg = load_tune(CONFIGS / "tune.yaml")
    assert cfg.objective == "val_loss" and cfg.direction == "minimize"
    assert cfg.decode({"targets": "q_proj,v_proj"}) == {"targets": ["q_proj", "v_proj"]}
    assert (CONFIGS / "tune.yaml").read_text().splitlines()[1].strip().startswith("#   supporttune tune --config")
    gpu = load_tune(CONFIGS / "tune-gpu.yaml")  # issue 21's search: the recipe as defaults, ROUGE-L on val
    assert gpu.objective == "rougeL" and gpu.direction == "maximize" and gpu.defaults["max_length"] == 1024
    assert {"lr", "r", "targets", "retrieve", "history", "context_tokens", "dropout", "epochs"} <= set(gpu.search)
    assert "--jobs" in (CONFIGS / "tune-gpu.yaml").read_text()


@pytest.mark.parametrize("change,needle", [
    ({"search": {"lr": {"type": "float", "low": 1e-2, "high": 1e-4}}}, "invalid search.lr: low (0.01) must not exceed high"),
    ({"search": {"r": {"type": "int", "low": 0, "high": 8}}}, "search.r=0: invalid r"),
    ({"search": {"out": {"type": "int", "low": 1, "high": 2}}}, "search.out: cannot be searched"),
    ({"search": {"rank": {"type": "int", "low": 1, "high": 2}}}, "search.rank: not a train field"),
    ({"search": {"r": {"type": "categorical"}}}, "a categorical needs choices"),
    ({"search": {"lr": {"type": "float", "low": 0, "high": 1e-3, "log": True}}}, "a log range needs low > 0"),
    ({"search": {"method": {"type": "categorical", "choices": ["lora", "magic"]}}}, "unknown method 'magic'"),
    ({"search": {"targets": {"type": "categorical", "choices": [["q_proj,v_proj"]]}}}, "names without commas"),
    ({"objective": "rouge"}, "unknown objective 'rouge'"),
    ({"defaults": {"out": "x"}}, "defaults.out: set by tune"),
    ({"eval": {"split": "test"}}, "eval.split: set by tune"),
    ({"defaults": {"fsdp": True}}, "defaults.fsdp: tune trains each trial in one process"),
    ({"search": {}}, "search"),
    ({"start_with": [{"rank": 4}]}, "start_with[0].rank: not a searched field"),
    ({"start_with": [{"r": 3}]}, "start_with[0].r=3: outside search.r"),
    ({"start_with": [{"lr": 1.0}]}, "start_with[0].lr=1.0: outside search.lr"),
])
def test_bad_tune_config_is_one_line(tmp_path, change, needle):
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump({**_doc("m", "d"), **change}))
    with pytest.raises(UserError) as e:
        load_tune(path)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_refuses_a_foreign_or_changed_directory(tmp_path):
    cfg = TuneConfig(**_doc("m", tmp_path / "no-data"))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x").write_text("keep")
    with pytest.raises(UserError, match="not a tune directory"):
        run_tune(cfg, tmp_path / "other", 1)
    (tmp_path / "s").mkdir()
    changed = TuneConfig(**{**_doc("m", tmp_path / "no-data"), "objective": "rougeL"})
    (tmp_path / "s" / "tune.yaml").write_text(yaml.safe_dump(changed.resolved()))
    with pytest.raises(UserError, match="different tune config .*objective"):
        run_tune(cfg, tmp_path / "s", 1)
    assert (tmp_path / "other" / "x").read_text() == "keep"


@pytest.mark.slow
def test_sampler_draws_the_same_trials_resumed_or_not(tmp_path):
    from supporttune.tune.search import _sampler

    cfg = TuneConfig(**_doc("m", "d"))

    def trials(out, counts):
        out.mkdir()
        for n in counts:  # one process per count: the study is reopened each time
            study = open_study(cfg, out)
            for _ in range(n):
                study.sampler = _sampler(cfg, len(study.trials))
                t = study.ask(cfg.distributions())
                study.tell(t, (t.params["lr"] - 1e-3) ** 2 + t.params["r"])
        return [t.params for t in open_study(cfg, out).trials]

    straight = trials(tmp_path / "a", [5])
    resumed = trials(tmp_path / "b", [2, 1, 2])
    assert straight == resumed and len({json.dumps(p) for p in straight}) == 5


class _SigintInTrial(TrainerCallback):
    """Ctrl-C in the n-th training run, at its first step (as test_train does)."""

    def __init__(self, run):
        self.run, self.seen = run, 0

    def on_train_begin(self, args, state, control, **kw):
        self.seen += 1

    def on_step_end(self, args, state, control, **kw):
        if self.seen == self.run and state.global_step == 1:
            os.kill(os.getpid(), signal.SIGINT)


def _trial_rows(out):
    return json.loads((out / "tune_results.json").read_text())["trials"]


@pytest.mark.slow
def test_search_resumes_after_more_trials_ctrl_c_and_a_killed_process(tiny_model_dir, builtin_data, tmp_path):
    from typer.testing import CliRunner

    from supporttune.cli import app

    config, out = tmp_path / "tune.yaml", tmp_path / "study"
    config.write_text(yaml.safe_dump(_doc(tiny_model_dir, builtin_data)))
    res = CliRunner().invoke(app, ["tune", "--config", str(config), "--trials", "2", "--out", str(out)])
    assert res.exit_code == 0, res.output
    first = _trial_rows(out)
    assert [r["number"] for r in first] == [0, 1] and "best: trial" in res.stdout
    for r in first:
        assert r["state"] in ("COMPLETE", "PRUNED") and r["dir"] == f"trials/trial-{r['number']:04d}"
        run = out / r["dir"]
        assert {"config.yaml", "loss.jsonl", "train_summary.json"} <= {p.name for p in run.iterdir()}
        assert not (run / "checkpoints").exists()
    assert (out / "tune_search.png").stat().st_size > 1000 and "| trial | state |" in (out / "tune_report.md").read_text()
    table = [line for line in (out / "tune_report.md").read_text().splitlines() if line.startswith("|")]
    assert table[1].count("|---") == table[0].count("|") - 1  # the table renders: one delimiter cell per header cell
    cfg = load_tune(config)
    assert run_tune(cfg, out, 2, log=lambda m: None)["trials"] == first  # nothing left to do

    # continue to 3 trials; Ctrl-C in the new trial 2
    with pytest.raises(Interrupted, match="trial 2; rerun the same command"):
        run_tune(cfg, out, 3, log=lambda m: None, callbacks=[_SigintInTrial(1)])
    after = _trial_rows(out)
    assert after[2]["state"] == "FAIL" and after[2]["interrupted"] and after[:2] == first
    study = open_study(cfg, out)
    study.ask(cfg.distributions())  # trial 3: left running by a process that was killed
    del study

    results = run_tune(cfg, out, 3, log=lambda m: None)  # the same command again
    rows = results["trials"]
    assert rows[:2] == first and results["counts"]["finished"] == 3 and len(rows) == 6
    assert [r["state"] for r in rows[2:4]] == ["FAIL", "FAIL"] and rows[5]["state"] == "WAITING"
    assert rows[4]["state"] in ("COMPLETE", "PRUNED") and rows[4]["steps"]
    assert open_study(cfg, out).user_attrs[INTERRUPTED] == [2, 3] and results["counts"]["interrupted"] == 2
    assert rows[4]["retry_of"] == 2 and rows[4]["params"] == rows[2]["params"]  # redone first
    assert rows[5]["retry_of"] == 3  # queued for the next run
    assert not (trial_dir(out, 2) / "checkpoints").exists()
    complete = [r for r in rows if r["state"] == "COMPLETE"]
    assert results["best"]["value"] == min(r["value"] for r in complete)
    assert set(results["search_space"]) == {"lr", "r", "targets"} and results["study"]["sampler"]["seed"] == 0


@pytest.mark.slow
def test_pruning_stops_training_and_leaves_a_finished_run(tiny_train_cfg, tmp_path):
    import optuna

    from supporttune.train.stage import train
    from supporttune.tune.search import pruning_callback

    study = optuna.create_study(pruner=optuna.pruners.ThresholdPruner(upper=0.0))  # every loss is above 0
    trial = study.ask()
    cb = pruning_callback(trial, 1.0, report_every=2)
    cfg = tiny_train_cfg(max_steps=6, save_steps=10)
    summary = train(cfg, callbacks=[cb])
    assert cb.pruned_at == 2 and summary["steps"] == 2
    assert list(study.trials[0].intermediate_values) == [2] and summary["final_val_loss"] == study.trials[0].intermediate_values[2]
    assert (cfg.out / "adapter_model.safetensors").is_file() and (cfg.out / "train_summary.json").is_file()


@pytest.mark.slow
def test_rouge_objective_generates_on_the_validation_split(tiny_model_dir, builtin_data, tmp_path):
    doc = _doc(tiny_model_dir, builtin_data, objective="rougeL", pruner={"type": "none"},
               eval={"limit": 2, "max_new_tokens": 4, "semantic": False, "perplexity": False, "latency_samples": 0,
                     "bootstrap": 100})
    results = run_tune(TuneConfig(**doc), tmp_path / "s", 1, log=lambda m: None)
    row = results["trials"][0]
    metrics = json.loads((tmp_path / "s" / row["dir"] / "eval" / "metrics.json").read_text())
    assert metrics["split"] == "val" and metrics["examples"] == 2
    assert row["value"] == metrics["rougeL"] and results["objective"]["direction"] == "maximize"
    assert results["study"]["pruner"]["reports"] == "-val_loss"


@pytest.mark.multiprocess
def test_jobs_run_trials_side_by_side_without_one_too_many(tiny_model_dir, builtin_data, tmp_path):
    """--jobs 2: two worker processes share the study; 3 trials in all (never 4), two of them at once."""
    from typer.testing import CliRunner

    from supporttune.cli import app

    config, out = tmp_path / "tune.yaml", tmp_path / "study"
    doc = _doc(tiny_model_dir, builtin_data)
    doc["defaults"]["max_steps"] = 4  # long enough that the first two trials overlap
    config.write_text(yaml.safe_dump(doc))
    res = CliRunner().invoke(app, ["tune", "--config", str(config), "--trials", "3", "--jobs", "2", "--out", str(out)])
    assert res.exit_code == 0, res.output
    results = json.loads((out / "tune_results.json").read_text())
    assert results["counts"]["finished"] == 3 and len(results["trials"]) == 3
    study = open_study(load_tune(config), out)
    trials = study.get_trials(deepcopy=False)
    assert {t.user_attrs["worker"] for t in trials} == {0, 1}
    first, second = sorted(trials, key=lambda t: t.datetime_start)[:2]
    assert second.datetime_start < first.datetime_complete  # side by side, not one after the other
    assert all((trial_dir(out, t.number) / "train_summary.json").is_file() for t in trials)


@pytest.mark.multiprocess
def test_ctrl_c_with_jobs_interrupts_every_worker_and_resumes(tiny_model_dir, builtin_data, tmp_path):
    """SIGINT to `tune --jobs 2` while both workers train: one clean line, both trials marked interrupted
    (their checkpoints dropped), exit non-zero; the same command then finishes the study."""
    import subprocess
    import sys
    import time

    config, out = tmp_path / "tune.yaml", tmp_path / "study"
    doc = _doc(tiny_model_dir, builtin_data)
    # trials long enough that the signal lands during training; one validation per trial
    doc["defaults"].update(max_steps=30, save_steps=1000, max_train_samples=64)
    doc["pruner"] = {"type": "none"}  # no validation every step
    config.write_text(yaml.safe_dump(doc))
    cmd = [sys.executable, "-m", "supporttune", "tune", "--config", str(config), "--trials", "2", "--jobs", "2",
           "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    logs = [trial_dir(out, n) / "loss.jsonl" for n in (0, 1)]
    deadline = time.time() + 240
    while not all(p.is_file() and p.read_text().count("\n") >= 2 for p in logs):
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=180)
    assert proc.returncode != 0 and "interrupted with 0 of 2 trials finished; rerun the same command" in err, err
    assert "Traceback" not in err, err
    study = open_study(load_tune(config), out)
    assert study.user_attrs[INTERRUPTED] == [0, 1]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    rows = json.loads((out / "tune_results.json").read_text())["trials"]
    assert res.returncode == 0, res.stderr
    assert sorted(r["retry_of"] for r in rows if r.get("retry_of") is not None) == [0, 1]


def test_a_new_study_tries_its_start_points_first(tiny_model_dir, builtin_data, tmp_path):
    point = {"lr": 0.01, "r": 4, "targets": ["q_proj", "k_proj", "v_proj"]}
    cfg = TuneConfig(**_doc(tiny_model_dir, builtin_data, start_with=[point], pruner={"type": "none"}))
    rows = run_tune(cfg, tmp_path / "s", 1, log=lambda m: None)["trials"]
    assert rows[0]["params"] == point and rows[0]["state"] == "COMPLETE"
    assert open_study(cfg, tmp_path / "s").trials[0].user_attrs["start_with"] == 0
