"""The real `supporttune` command: bad input gets one line on stderr and a non-zero exit, never a traceback."""

import subprocess
import sys

import pytest


def cli(*args, stdin=None):
    return subprocess.run([sys.executable, "-m", "supporttune", *args], capture_output=True, text=True, input=stdin,
                          timeout=300)


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
def test_bad_input_one_line(args, needle, tmp_path):
    _one_line_error(cli(*args), needle)


def test_help_explains_every_command():
    res = cli("--help")
    assert res.returncode == 0
    for cmd in ("prepare", "train", "evaluate", "run", "report", "chat", "serve", "export", "bench"):
        assert cmd in res.stdout
    train_help = cli("train", "--help").stdout
    assert "LoRA rank" in train_help and "--resume" in train_help


def test_prepare_cli_and_no_overwrite(tmp_path):
    out = tmp_path / "d"
    ok = cli("prepare", "--input", "builtin", "--out", str(out))
    assert ok.returncode == 0 and "kept" in ok.stdout
    again = cli("prepare", "--input", "builtin", "--out", str(out))
    _one_line_error(again, "--force")
    assert cli("prepare", "--input", "builtin", "--out", str(out), "--force").returncode == 0


def test_run_refuses_existing_dir_without_resume(tmp_path):
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "x").write_text("keep")
    _one_line_error(cli("run", "--out", str(tmp_path / "s")), "--resume")
    assert (tmp_path / "s" / "x").read_text() == "keep"
