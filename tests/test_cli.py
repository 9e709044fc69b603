"""The `supporttune` command: bad input gets one line on stderr and a non-zero exit, never a traceback.

Most cases run ``python -m supporttune`` in this process (``cli`` fixture: same ``__main__``, no
interpreter start-up); the ``real`` ones start the command as a child process, as a user would.
"""

import re

import pytest

COMMANDS = ("prepare", "train", "evaluate", "run", "report", "chat", "serve", "export", "bench")


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
    (["prepare", "--format", "xml", "--out", "x"], "invalid format"),
    (["bogus"], "No such command 'bogus'"),
    (["train", "--r", "0", "--out", "x"], "invalid r"),
    (["train", "--method", "magic", "--out", "x"], "unknown method 'magic'"),
    (["evaluate", "--data", "d", "--run", "/no/run"], "not a training run"),
    (["evaluate", "--data", "d"], "exactly one of --run or --baseline"),
    (["run", "--preset", "nope"], "unknown preset"),
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
    from supporttune.config import TrainConfig

    text = " ".join(re.sub(r"[│╭╮╰╯─]", " ", cli("train", "--help").stdout).split())
    assert "--resume" in text and "--nproc" in text
    for field in ("r", "alpha", "virtual_tokens", "max_steps"):  # the field's description is the flag's help
        assert " ".join(TrainConfig.model_fields[field].description.split()) in text, field


def test_prepare_cli_and_no_overwrite(tmp_path, cli):
    out = tmp_path / "d"
    ok = cli("prepare", "--input", "builtin", "--out", out)
    assert ok.returncode == 0 and re.search(r"kept \d+ pairs", ok.stdout) and (out / "train.jsonl").is_file()
    (out / "mine.txt").write_text("keep")
    _one_line_error(cli("prepare", "--input", "builtin", "--out", out), "--force")
    assert (out / "mine.txt").read_text() == "keep"
    assert cli("prepare", "--input", "builtin", "--out", out, "--force").returncode == 0
    assert not (out / "mine.txt").exists() and (out / "train.jsonl").is_file()


def test_run_refuses_existing_dir_without_resume(tmp_path, cli):
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "x").write_text("keep")
    _one_line_error(cli("run", "--out", tmp_path / "s"), "--resume")
    assert (tmp_path / "s" / "x").read_text() == "keep"
