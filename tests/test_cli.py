"""The `supporttune` command: bad input gets one line on stderr and a non-zero exit, never a traceback.

Most cases run ``python -m supporttune`` in this process (``cli`` fixture: same ``__main__``, no
interpreter start-up); the ``real`` ones start the command as a child process, as a user would.
"""

import re
import sys

import pytest

COMMANDS = ("prepare", "train", "evaluate", "run", "tune", "report", "rate", "preferences", "chat", "serve", "export", "bench")


def _one_line_error(res, needle):
    assert res.returncode != 0
    lines = [x for x in res.stderr.splitlines() if x.startswith("supporttune: error:")]
    assert len(lines) == 1 and needle in lines[0], res.stderr
    assert "Traceback" not in res.stderr


@pytest.mark.parametrize("args,needle", [
    (["prepare", "--nope"], "No such option: --nope"),
    (["prepare"], "Missing option '--out'"),
    (["prepare", "--out", "x", "--val-frac", "abc"], "--val-frac"),
    (["prepare", "--input", "/no/such.csv", "--out", "x"], "/no/such.csv: file not found"),
    (["prepare", "--format", "xml", "--out", "x"], "'xml' is not one of"),
    (["bogus"], "No such command 'bogus'"),
    (["train", "--r", "0", "--out", "x"], "invalid r"),
    (["train", "--method", "magic", "--out", "x"], "unknown method 'magic'"),
    (["evaluate", "--data", "d", "--run", "/no/run"], "not a training run"),
    (["evaluate", "--data", "d"], "exactly one of --run or --baseline"),
    (["run", "--preset", "nope"], "'nope' is not one of"),
    (["export", "/no/run", "--out", "x"], "not a training run"),
    (["bench", "--methods", "nope"], "unknown method"),
])
def test_bad_input_one_line(args, needle, cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a relative --out must never land in the repository
    _one_line_error(cli(*args), needle)
    assert not (tmp_path / "x").exists()


def test_the_real_command_prints_one_line_and_exits_2(cli):
    res = cli("train", "--method", "magic", "--out", "x", real=True)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == ["supporttune: error: invalid config: Value error, unknown method 'magic' "
                                               "(choose from lora, qlora, dora, ia3, prompt-tuning, prefix-tuning)"]


def test_help_explains_every_command(cli):
    import typer.main

    from supporttune.cli import app

    res = cli("--help", real=True)
    assert res.returncode == 0
    rows = dict(re.findall(r"^│ (\w+) +(\S.*?) *│$", res.stdout, flags=re.M))  # the Commands box, first line each
    registered = typer.main.get_command(app).commands
    assert set(rows) == set(registered) == set(COMMANDS)
    for name, text in rows.items():  # each row opens with its command's own docstring
        doc = " ".join((registered[name].help or "").split())
        assert text and doc.startswith(text.rstrip("…")), (name, text)
    for name, command in registered.items():  # and every flag and argument says what it does
        undocumented = [p.name for p in command.params if not (getattr(p, "help", None) or "").strip()]
        assert not undocumented, (name, undocumented)


def test_train_help_comes_from_the_config(cli):
    from supporttune.train.config import TrainConfig

    text = " ".join(re.sub(r"[│╭╮╰╯─]", " ", cli("train", "--help").stdout).split())
    assert "--resume" in text and "--nproc" in text
    for field in ("r", "alpha", "virtual_tokens", "max_steps"):  # the field's description is the flag's help
        assert " ".join(TrainConfig.model_fields[field].description.split()) in text, field


def test_prepare_cli_and_no_overwrite(tmp_path, cli):
    out = tmp_path / "d"
    ok = cli("prepare", "--input", "builtin", "--builtin-threads", 40, "--out", out)
    assert ok.returncode == 0 and re.search(r"kept \d+ pairs", ok.stdout) and (out / "train.jsonl").is_file()
    (out / "mine.txt").write_text("keep")
    _one_line_error(cli("prepare", "--input", "builtin", "--builtin-threads", 40, "--out", out), "--force")
    assert (out / "mine.txt").read_text() == "keep"
    assert cli("prepare", "--input", "builtin", "--builtin-threads", 40, "--out", out, "--force").returncode == 0
    assert not (out / "mine.txt").exists() and (out / "train.jsonl").is_file()


def test_run_refuses_existing_dir_without_resume(tmp_path, cli):
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "x").write_text("keep")
    _one_line_error(cli("run", "--out", tmp_path / "s"), "--resume")
    assert (tmp_path / "s" / "x").read_text() == "keep"


# --- options come from the configs (issue 11 item 5) and the help is clean (issue 13) -----------------------------


def _commands() -> dict:
    """Each command's click object and the configs its options were generated from."""
    import typer.main

    from supporttune.cli import app

    clicked = typer.main.get_command(app).commands
    return {c.name or c.callback.__name__: (clicked[c.name or c.callback.__name__], c.callback.configs)
            for c in app.registered_commands}


OWN_OPTIONS = {("train", "config"), ("bench", "quick"), ("bench", "scaling"), ("bench", "global_batch"), ("bench", "force"),
               ("bench", "speed"), ("bench", "per_step"),
               ("rate", "force")}  # the command's own, not config fields


def test_every_option_is_a_config_field_that_defaults_to_not_given():
    """Flags default to None, so the config's default applies: changing it there changes the command."""
    for name, (command, configs) in _commands().items():
        fields = {f for c in configs for f in c.model_fields}
        for p in command.params:
            if p.name == "help" or (name, p.name) in OWN_OPTIONS:
                continue
            assert p.name in fields, (name, p.name)
            assert p.default is None or p.required, (name, p.name, p.default)


def test_help_shows_defaults_as_typed_and_nothing_twice():
    for name, (command, configs) in _commands().items():
        seen = set()
        for p in command.params:
            names = [*p.opts, *getattr(p, "secondary_opts", [])]
            assert not seen & set(names), (name, names)
            seen |= set(names)
            text = (p.help or "").replace("\\[", "[")
            assert text.count("[default:") <= 1, (name, p.name, text)
            plain_flag = getattr(p, "is_flag", False) and not p.secondary_opts
            owner = next((c for c in configs if p.name in c.model_fields), None)
            if owner and p.param_type_name == "option" and not plain_flag and not p.required:
                if owner.model_fields[p.name].default is not None:
                    assert "[default:" in text, (name, p.name, text)
    text = _help("train")
    for needle in ("[default: lora]", "[default: 8]", "[default: 3]", "[default: q_proj,v_proj]", "--retrieve",
                   "--history", "--report-to", "[default: --tags]", "[default: --ddp]"):
        assert needle in text, needle



def _help(*command) -> str:
    import re

    from typer.testing import CliRunner

    from supporttune.cli import app

    res = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "250"}, prog_name="supporttune")
    assert res.exit_code == 0, res.output
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", res.output).split())


@pytest.mark.parametrize("command", ["", "prepare", "train", "evaluate", "run", "report", "chat", "serve", "export", "bench"])
def test_help_has_no_type_placeholders_for_flags_or_braces(command):
    import re

    text = _help(*([command] if command else []))
    assert "<bool>" not in text and "{" not in text.split("Usage:")[1].split(" Options ")[0], text[:300]
    assert not re.search(r"--base\b", text)


def test_usage_line_says_which_arguments_take_several():
    assert "Usage: supporttune serve [OPTIONS] RUN..." in _help("serve")
    assert "Usage: supporttune chat [OPTIONS] RUN " in _help("chat") + " "


def test_readme_presets_all_run():
    import re
    from pathlib import Path

    from supporttune.suite.run import PRESETS, load_suite, preset_path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    named = set(re.findall(r"--preset ([\w-]+)", readme))
    assert named and named <= set(PRESETS), named - set(PRESETS)
    assert "ablations" in PRESETS and len(load_suite(preset_path("ablations")).expanded()) == 17


def test_train_flags_reach_the_config_and_the_summary_line_is_rounded(monkeypatch, tmp_path):
    """`train --retrieve 2 --history 3` (fields added to TrainConfig get flags with no CLI change); YAML < flags."""
    from typer.testing import CliRunner

    import supporttune.train.stage
    from supporttune.cli import app

    seen = {}

    def fake_train(cfg, callbacks=None):
        seen["cfg"] = cfg
        return {"steps": 2, "wall_time_s": 1.5, "first_train_loss": 10.123456, "final_train_loss": 9.87654,
                "final_val_loss": None, "tokens_per_s": 12.0, "trainable_params": 1234, "trainable_pct": 0.5}

    monkeypatch.setattr(supporttune.train.stage, "train", fake_train)
    (tmp_path / "run.yaml").write_text("r: 4\nhistory: 1\nreport_to: []\nfsdp: true\nforce: true\n")
    res = CliRunner().invoke(app, ["train", "--config", str(tmp_path / "run.yaml"), "--retrieve", "2", "--history", "3",
                                   "--targets", "q_proj,k_proj", "--no-tags", "--ddp", "--out", str(tmp_path / "r")])
    assert res.exit_code == 0, res.output
    cfg = seen["cfg"]
    assert (cfg.retrieve, cfg.history, cfg.r, cfg.targets, cfg.tags) == (2, 3, 4, ["q_proj", "k_proj"], False)
    assert not cfg.fsdp and cfg.force  # a two-way flag overrides the file; an absent plain flag leaves it
    assert "train loss 10.123 -> 9.877, val loss n/a" in res.output


def test_ctrl_c_in_training_says_what_happens(monkeypatch):
    import os
    import signal

    from supporttune.train.trainer import install_signal_handlers, restore_signal_handlers

    class Log:
        interrupted = False

    said, log = [], Log()
    previous = install_signal_handlers(log, say=said.append)
    try:
        os.kill(os.getpid(), signal.SIGINT)
        assert log.interrupted and len(said) == 1 and "stopping after this step and saving a checkpoint" in said[0]
        with pytest.raises(KeyboardInterrupt):  # a second Ctrl-C quits at once
            os.kill(os.getpid(), signal.SIGINT)
    finally:
        restore_signal_handlers(previous)


def test_chat_uses_line_editing_temperature_and_ctrl_c_cancels_a_reply(monkeypatch, capsys):
    import builtins
    import io
    import sys

    import supporttune.serve.chat as chat
    from supporttune.serve.respond import Reply

    class Tty(io.StringIO):
        def isatty(self):
            return True

    calls, typed = [], iter(["Where is my parcel?", "And my refund?", ""])

    def fake_respond(agent, items, max_new_tokens, temperature=0.0):
        calls.append((items[0][0], temperature, len(items[0][2])))
        if len(calls) == 1:
            raise KeyboardInterrupt  # Ctrl-C while the first reply is generated
        return [Reply("We are on it.", "negative", "high", "refund", 5, 4, "stop")]

    def fake_input(prompt):
        print(prompt, end="")
        return next(typed)

    monkeypatch.setattr(chat, "respond_batch", fake_respond)
    monkeypatch.setattr(builtins, "input", fake_input)  # what readline edits: the tty path must go through input()
    monkeypatch.setattr(sys, "stdin", Tty())
    agent = type("A", (), {"name": "lora"})()
    assert chat.chat_loop(agent, "ShopNest", stdin=sys.stdin, stdout=sys.stdout, temperature=0.7) == 1
    out = capsys.readouterr().out
    assert "reply cancelled" in out and "agent> We are on it." in out
    assert calls == [("Where is my parcel?", 0.7, 0), ("And my refund?", 0.7, 0)]  # the cancelled turn left no history
    assert "readline" in sys.modules


def test_alpaca_instruction_starts_the_message(tmp_path):
    import json

    from supporttune.data.tabular import read_tabular

    rows = [{"instruction": "Answer the ShopNest customer.", "input": "My parcel is late.", "output": "Sorry!"},
            {"instruction": "Where is my refund?", "input": "", "output": "Checking now."}]
    (tmp_path / "alpaca.json").write_text(json.dumps(rows))
    pairs = read_tabular(tmp_path / "alpaca.json", "json").pairs
    assert [p.input for p in pairs] == ["Answer the ShopNest customer.\n\nMy parcel is late.", "Where is my refund?"]
    assert [p.input for p in read_tabular(tmp_path / "alpaca.json", "json", instruction_col="").pairs] == \
        ["My parcel is late.", ""]


def test_suite_eta_names_what_it_cannot_time_yet():
    from supporttune.suite.run import _Eta

    eta = _Eta()
    assert eta.left(["variant", "baseline"]) == ""
    eta.done("variant", 100)
    assert eta.left(["variant", "variant", "baseline"]) == ", about 3m20s left + 1 baseline not timed yet"
    assert eta.left(["baseline"] * 4) == ", 4 baselines not timed yet"  # not "about 0s left + ..."
    eta.done("baseline", 4)
    assert eta.left(["variant", "baseline", "baseline"]) == ", about 1m48s left"


FAKE_TENSORBOARD = '''"""A stand-in for tensorboardX: the Trainer's TensorBoardCallback writes through it (no real package needed)."""
import json, os


class SummaryWriter:
    def __init__(self, log_dir=None, **kwargs):
        os.makedirs(log_dir, exist_ok=True)
        self.path = os.path.join(log_dir, "scalars.jsonl")

    def add_scalar(self, tag, value, step):
        with open(self.path, "a") as f:
            f.write(json.dumps({"tag": tag, "value": value, "step": step}) + "\\n")

    def add_text(self, *args, **kwargs):
        pass

    def flush(self):
        pass

    def close(self):
        pass
'''


@pytest.mark.slow
def test_short_training_prints_real_losses_and_reports_to_tensorboard(tiny_model_dir, builtin_data, tmp_path, monkeypatch):
    """2 steps with logging every 5: the first and last steps are logged anyway (was 'train loss None -> None')."""
    import importlib.util
    import json
    import re

    from typer.testing import CliRunner

    from supporttune.cli import app

    if importlib.util.find_spec("tensorboard") is None:
        (tmp_path / "fake" / "tensorboardX").mkdir(parents=True)
        (tmp_path / "fake" / "tensorboardX" / "__init__.py").write_text(FAKE_TENSORBOARD)
        monkeypatch.syspath_prepend(str(tmp_path / "fake"))
    out = tmp_path / "run"
    res = CliRunner().invoke(app, ["train", "--model", str(tiny_model_dir), "--data", str(builtin_data), "--out", str(out),
                                   "--max-steps", "2", "--batch-size", "2", "--grad-accum", "1", "--device", "cpu",
                                   "--max-val-samples", "4", "--r", "4", "--alpha", "8", "--retrieve", "2", "--history", "3",
                                   "--report-to", "tensorboard"])
    assert res.exit_code == 0, res.output
    assert re.search(r"train loss \d+\.\d{3} -> \d+\.\d{3}, val loss \d+\.\d{3}", res.output), res.output
    steps = [json.loads(x)["step"] for x in (out / "loss.jsonl").read_text().splitlines() if "train_loss" in x]
    assert steps == [1, 2]
    assert any((out / "tensorboard").iterdir())
    fake = out / "tensorboard" / "scalars.jsonl"
    if fake.is_file():
        assert {r["step"] for r in map(json.loads, fake.read_text().splitlines()) if r["tag"] == "train/loss"} == {1, 2}


@pytest.mark.slow
def test_chat_in_a_terminal_edits_lines_and_recalls_history(tiny_run):
    """In a real pseudo-terminal: arrow keys edit the line (no '^[[D' echoed) and Up recalls the last message."""
    import os
    import pty
    import select
    import time

    pid, fd = pty.fork()
    if pid == 0:  # the child: the real command, its terminal is the pty
        os.execvp(sys.executable, [sys.executable, "-m", "supporttune", "chat", str(tiny_run), "--device", "cpu",
                                   "--max-new-tokens", "3"])
    seen = b""

    def until(marker: bytes, count: int, timeout: float = 180) -> None:
        nonlocal seen
        deadline = time.monotonic() + timeout
        while seen.count(marker) < count:
            assert time.monotonic() < deadline, seen.decode(errors="replace")
            if select.select([fd], [], [], 0.5)[0]:
                try:
                    seen += os.read(fd, 4096)
                except OSError:
                    break

    try:
        until(b"customer> ", 1)
        os.write(fd, b"abc\x1b[D\x1b[DX\r")  # type abc, two steps left, insert X: "aXbc"
        until(b"customer> ", 2)
        os.write(fd, b"\x1b[A\r")  # Up: the same message again
        until(b"customer> ", 3)
        os.write(fd, b"\x04")  # Ctrl-D ends
        until(b"\n", seen.count(b"\n") + 1, timeout=30)
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    text = seen.decode(errors="replace")
    assert os.waitstatus_to_exitcode(status) == 0, text
    assert "^[[" not in text and text.count("agent> ") == 2 and "aXbc" in text, text


def test_version_prints_and_exits_zero():
    from typer.testing import CliRunner

    from supporttune import __version__
    from supporttune.cli import app

    res = CliRunner().invoke(app, ["--version"])
    assert res.exit_code == 0 and res.output.strip() == __version__


@pytest.mark.parametrize("command", COMMANDS)
def test_help_at_80_columns_shows_every_flag_name_whole(command):
    """Issue 24: rich's table cut names (`--pad-to-max-le…`, `SUPPORTTUNE_API_KE…`) on an 80-column terminal."""
    from typer.testing import CliRunner

    from supporttune.cli import app

    res = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "80"}, prog_name="supporttune")
    assert res.exit_code == 0, res.output
    assert "…" not in res.output
    assert all(len(line) <= 80 for line in res.output.splitlines()), max(res.output.splitlines(), key=len)
    command_obj, configs = _commands()[command]
    names = {o for p in command_obj.params for o in [*p.opts, *getattr(p, "secondary_opts", [])]}
    fields = {f"--{f.replace('_', '-')}" for c in configs for f in c.model_fields}
    words = set(re.findall(r"--[\w-]+|-\w\b|[A-Z_]{6,}", res.output))
    missing = sorted(n for n in names if n.startswith("-") and n not in words)
    assert not missing, missing
    assert fields & names <= words
    if command == "serve":
        assert "SUPPORTTUNE_API_KEY" in words


def test_ctrl_c_during_evaluate_says_what_is_saved_and_how_to_resume(tiny_model_dir, builtin_data, tmp_path, monkeypatch):
    """Issue 24: Ctrl-C exited 130 silently; now one line with the replies on disk and the command that resumes."""
    from typer.testing import CliRunner

    import supporttune.evaluate.stage as stage
    from supporttune.cli import app
    from supporttune.core.errors import Interrupted
    from supporttune.inference.decode import Generated

    def one_batch_then_ctrl_c(agent, examples, settings, progress=None, on_batch=None, **kw):
        on_batch([0, 1], [Generated("hello there", 2, False, 0.01), Generated("hi", 1, False, 0.01)])
        raise KeyboardInterrupt

    monkeypatch.setattr(stage, "generate_replies", one_batch_then_ctrl_c)
    out = tmp_path / "zs"
    args = ["evaluate", "--baseline", "zero-shot", "--model", str(tiny_model_dir), "--data", str(builtin_data),
            "--out", str(out), "--limit", "5", "--no-semantic", "--device", "cpu"]
    monkeypatch.setattr(sys, "argv", ["supporttune", *args])
    res = CliRunner().invoke(app, args)
    assert isinstance(res.exception, Interrupted) and res.exception.exit_code == 130
    message = str(res.exception)
    assert "2 of 5 replies saved in" in message and "predictions.partial.jsonl" in message
    assert message.endswith(f"; resume with: supporttune {' '.join(args)}")


def test_evaluate_without_semantic_prints_a_dash(builtin_data, tmp_path):
    """Issue 24: `evaluate --no-semantic` printed 'SemSim None'."""
    from typer.testing import CliRunner

    from supporttune.cli import app

    res = CliRunner().invoke(app, ["evaluate", "--baseline", "constant", "--data", str(builtin_data),
                                   "--out", str(tmp_path / "c"), "--no-semantic", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert "SemSim -" in res.output and "None" not in res.output
