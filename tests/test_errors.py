"""Every command x every class of bad input: one line on stderr, a non-zero exit, no traceback, nothing touched.

The contract of issue 13, as a table. Each row is model-free: its error must fire before any
model loads (a model cache appearing under the workspace fails the row). Most rows call the
entry point in this process (``entry.main`` with ``sys.argv`` patched: milliseconds); rows marked
``real`` start ``python -m supporttune`` as a user would, and ``ro`` rows run it with the
workspace's ``ro/`` folder mounted read-only (a private mount namespace: root ignores file modes).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

CLASSES = ("missing path", "wrong kind of path", "existing file as --out", "read-only directory", "bad number",
           "unknown name", "malformed file")

# (command, class, argv, text the one error line must hold, how: "" in process, "real" or "ro" as a child process)
ROWS = [
    ("prepare", "missing path", ["prepare", "--input", "nope.csv", "--out", "o"], "nope.csv: file not found", "real"),
    ("prepare", "wrong kind of path", ["prepare", "--input", "data", "--out", "o"], "data: is a directory", ""),
    ("prepare", "existing file as --out", ["prepare", "--out", "afile"], "afile: exists and is not a directory", ""),
    ("prepare", "read-only directory", ["prepare", "--out", "ro/o"], "read-only file system", "ro"),
    ("prepare", "bad number", ["prepare", "--out", "o", "--val-frac", "2"], "invalid val_frac", ""),
    ("prepare", "bad number", ["prepare", "--out", "o", "--max-pairs", "0"], "invalid max_pairs", ""),
    ("prepare", "bad number", ["prepare", "--out", "o", "--seed", "x"], "'--seed'", ""),
    ("prepare", "unknown name", ["prepare", "--out", "o", "--format", "xml"], "'xml' is not one of", ""),
    ("prepare", "unknown name", ["prepare", "--out", "o", "--sentiment", "nope"], "'nope' is not one of", ""),
    ("prepare", "malformed file", ["prepare", "--input", "bad.jsonl", "--out", "o"], "bad.jsonl:1: not valid JSON", ""),
    ("prepare", "malformed file", ["prepare", "--input", "bad.json", "--out", "o"], "bad.json: not valid JSON", ""),
    # issue 24: wrong column names name the flags; a ';' or UTF-16 CSV is read (its columns listed right); 1 column
    ("prepare", "malformed file", ["prepare", "--input", "cols.csv", "--out", "o"],
     "cols.csv: missing column(s) input, output (found: question, answer); name yours with --input-col and --output-col", ""),
    ("prepare", "malformed file", ["prepare", "--input", "cols_semicolon.csv", "--out", "o"],
     "missing column(s) input, output (found: question, answer); name yours with --input-col", ""),
    ("prepare", "malformed file", ["prepare", "--input", "cols_utf16.csv", "--out", "o"],
     "missing column(s) input, output (found: question, answer); name yours with --input-col", ""),
    ("prepare", "malformed file", ["prepare", "--input", "one_column.csv", "--out", "o", "--output-col", "a"],
     "found 1 column; need at least 2, separated by commas, semicolons, tabs, pipes", ""),
    ("prepare", "malformed file", ["prepare", "--input", "answers.jsonl", "--out", "o"],
     "missing column(s) output (found: input, reply); name yours with --output-col", ""),
    ("prepare", "malformed file", ["prepare", "--input", "binary.csv", "--out", "o"], "looks like a binary file", ""),
    ("train", "missing path", ["train", "--data", "nope", "--out", "o"], "nope/train.jsonl: not found", ""),
    ("train", "missing path", ["train", "--config", "nope.yaml"], "nope.yaml: config file not found", ""),
    ("train", "wrong kind of path", ["train", "--data", "afile", "--out", "o"], "afile/train.jsonl: not found", ""),
    ("train", "existing file as --out", ["train", "--data", "data", "--out", "afile"], "afile: exists and is not a directory", "real"),
    ("train", "read-only directory", ["train", "--data", "data", "--out", "ro/r"], "read-only file system", "ro"),
    ("train", "bad number", ["train", "--r", "0"], "invalid r", ""),
    ("train", "bad number", ["train", "--lr", "5"], "invalid lr", ""),
    ("train", "bad number", ["train", "--epochs", "-1"], "invalid epochs", ""),
    ("train", "bad number", ["train", "--retrieve", "99"], "invalid retrieve", ""),
    ("train", "bad number", ["train", "--history", "-1"], "invalid history", ""),
    ("train", "bad number", ["train", "--distract-share", "2"], "invalid distract_share", ""),
    ("train", "bad number", ["train", "--nproc", "0"], "invalid nproc", ""),
    ("train", "unknown name", ["train", "--method", "magic"], "unknown method 'magic'", ""),
    ("train", "unknown name", ["train", "--data", "data", "--out", "o", "--model", "nope"], "nope: no such model", ""),
    ("train", "unknown name", ["train", "--report-to", "mlflow"], "invalid report_to", ""),
    ("train", "unknown name", ["train", "--retrieval", "grep"], "'grep' is not one of", ""),
    ("train", "malformed file", ["train", "--config", "bad.yaml"], "bad.yaml: not valid YAML", ""),
    ("train", "malformed file", ["train", "--config", "extra.yaml"], "invalid warp", ""),
    ("train", "malformed file", ["train", "--data", "baddata", "--out", "o"], "baddata/train.jsonl:1: not valid JSON", ""),
    ("train", "missing path", ["train", "--objective", "dpo", "--from", "goodrun", "--preferences", "nope.jsonl"],
     "nope.jsonl: file not found", ""),
    ("train", "missing path", ["train", "--objective", "dpo", "--from", "nope", "--preferences", "prefs_ok.jsonl"],
     "nope: not a training run", ""),
    ("train", "malformed file", ["train", "--objective", "dpo", "--from", "goodrun", "--preferences", "prefs_empty.jsonl"],
     "no preference rows", ""),
    ("train", "malformed file", ["train", "--objective", "dpo", "--from", "goodrun", "--preferences", "prefs_half.jsonl"],
     "needs both 'chosen' and 'rejected'", ""),
    ("train", "malformed file", ["train", "--objective", "dpo", "--from", "goodrun", "--preferences", "prefs_alien.jsonl"],
     "not a message of data", ""),
    ("train", "malformed file", ["train", "--objective", "dpo", "--from", "goodrun", "--preferences", "prefs_plain.jsonl"],
     "the prompt is text, but the run uses the chat prompt format", ""),
    ("train", "unknown name", ["train", "--objective", "ppo"], "'ppo' is not one of", ""),
    ("train", "bad number", ["train", "--objective", "kto", "--from", "goodrun", "--preferences", "prefs_ok.jsonl",
                             "--batch-size", "1"], "kto needs --batch-size of at least 2", ""),
    ("train", "missing path", ["train", "--objective", "dpo", "--preferences", "prefs_ok.jsonl"], "needs --from RUN", ""),
    ("preferences", "missing path", ["preferences", "--run", "nope", "--out", "p.jsonl"], "nope: not a training run", ""),
    ("preferences", "wrong kind of path", ["preferences", "--run", "afile", "--out", "p.jsonl"], "afile: not a training run", ""),
    ("preferences", "existing file as --out", ["preferences", "--run", "goodrun", "--out", "afile"], "afile: exists (use --force", ""),
    ("preferences", "read-only directory", ["preferences", "--run", "goodrun", "--out", "ro/p.jsonl"], "read-only file system", "ro"),
    ("preferences", "bad number", ["preferences", "--run", "goodrun", "--out", "p.jsonl", "--margin", "200"], "invalid margin", ""),
    ("preferences", "unknown name", ["preferences", "--run", "goodrun", "--out", "p.jsonl", "--baselines", "zero-shot"],
     "unknown baseline(s) zero-shot", ""),
    ("preferences", "malformed file", ["preferences", "--run", "badrun", "--out", "p.jsonl"], "not a supporttune run record", ""),
    ("evaluate", "missing path", ["evaluate", "--run", "nope", "--data", "data"], "nope: not a training run", ""),
    ("evaluate", "missing path", ["evaluate", "--baseline", "constant", "--data", "nope", "--out", "o"], "nope/test.jsonl: not found", ""),
    ("evaluate", "wrong kind of path", ["evaluate", "--run", "afile", "--data", "data"], "afile: not a training run", ""),
    ("evaluate", "existing file as --out", ["evaluate", "--baseline", "retrieval", "--data", "data", "--out", "afile"],
     "afile: exists and is not a directory", "real"),
    ("evaluate", "read-only directory", ["evaluate", "--baseline", "constant", "--data", "data", "--out", "ro/b"],
     "read-only file system", "ro"),
    ("evaluate", "bad number", ["evaluate", "--baseline", "constant", "--data", "data", "--out", "o", "--limit", "0"], "invalid limit", ""),
    ("evaluate", "bad number", ["evaluate", "--run", "goodrun", "--data", "data", "--max-new-tokens", "0"], "invalid max_new_tokens", ""),
    ("evaluate", "bad number", ["evaluate", "--run", "goodrun", "--data", "data", "--bootstrap", "5"], "invalid bootstrap", ""),
    ("evaluate", "unknown name", ["evaluate", "--baseline", "oracle", "--data", "data", "--out", "o"], "unknown baseline 'oracle' (choose from zero-shot, few-shot", ""),
    ("evaluate", "unknown name", ["evaluate", "--run", "goodrun", "--data", "data", "--split", "dev"], "'dev' is not one of", ""),
    ("evaluate", "malformed file", ["evaluate", "--baseline", "constant", "--data", "baddata", "--out", "o"],
     "baddata/test.jsonl:1: not valid JSON", ""),
    ("evaluate", "malformed file", ["evaluate", "--run", "badrun", "--data", "data"], "not a supporttune run record", ""),
    ("run", "missing path", ["run", "--config", "nope.yaml"], "nope.yaml: suite config not found", ""),
    ("run", "missing path", ["run", "--data", "nope.csv", "--out", "o"], "nope.csv: data not found", ""),
    ("run", "wrong kind of path", ["run", "--config", "data"], "data: suite config not found", ""),
    ("run", "existing file as --out", ["run", "--out", "afile"], "afile: exists and is not a directory", "real"),
    ("run", "read-only directory", ["run", "--out", "ro/s"], "read-only file system", "ro"),
    ("run", "bad number", ["run", "--nproc", "0"], "invalid nproc", ""),
    ("run", "bad number", ["run", "--config", "zero_rank.yaml"], "invalid r", ""),
    ("run", "unknown name", ["run", "--preset", "nope"], "'nope' is not one of", ""),
    ("run", "unknown name", ["run", "--model", "nope", "--out", "o"], "nope: no such model", ""),
    ("run", "malformed file", ["run", "--config", "bad.yaml"], "bad.yaml: not valid YAML", ""),
    ("run", "malformed file", ["run", "--data", "bad.jsonl", "--out", "o"], "bad.jsonl:1: not valid JSON", ""),
    ("report", "missing path", ["report", "nope"], "nope: not a directory", ""),
    ("report", "wrong kind of path", ["report", "afile"], "afile: not a directory", ""),
    ("report", "wrong kind of path", ["report", "data"], "data: not a suite directory", ""),
    ("report", "read-only directory", ["report", "ro/suite"], "read-only file system", "ro"),
    ("report", "unknown name", ["report", "badsuite", "--rescore-all"], "No such option", ""),
    ("report", "malformed file", ["report", "badsuite"], "suite_status.json: not valid JSON", ""),
    ("chat", "missing path", ["chat", "nope"], "nope: not a training run", ""),
    ("chat", "wrong kind of path", ["chat", "afile"], "afile: not a training run", ""),
    ("chat", "bad number", ["chat", "goodrun", "--max-new-tokens", "0"], "invalid max_new_tokens", "real"),
    ("chat", "bad number", ["chat", "goodrun", "--max-new-tokens", "-5"], "invalid max_new_tokens", ""),
    ("chat", "bad number", ["chat", "goodrun", "--temperature", "-1"], "invalid temperature", ""),
    ("chat", "unknown name", ["chat", "goodrun", "--device", "tpu"], "'tpu' is not one of", ""),
    ("chat", "malformed file", ["chat", "badrun"], "not a supporttune run record", ""),
    ("serve", "missing path", ["serve", "nope"], "nope: not a training run", ""),
    ("serve", "wrong kind of path", ["serve", "afile"], "afile: not a training run", ""),
    ("serve", "bad number", ["serve", "goodrun", "--port", "70000"], "invalid port", ""),
    ("serve", "bad number", ["serve", "goodrun", "--max-batch", "0"], "invalid max_batch", ""),
    ("serve", "bad number", ["serve", "goodrun", "--max-wait-ms", "-1"], "invalid max_wait_ms", ""),
    ("serve", "bad number", ["serve", "goodrun", "--port", "{busy_port}"], "cannot listen on 127.0.0.1:", ""),
    ("serve", "unknown name", ["serve", "goodrun", "--base", "x"], "No such option: --base", ""),
    ("serve", "malformed file", ["serve", "badrun"], "not a supporttune run record", ""),
    ("export", "missing path", ["export", "nope", "--out", "o"], "nope: not a training run", ""),
    ("export", "wrong kind of path", ["export", "afile", "--out", "o"], "afile: not a training run", ""),
    ("export", "existing file as --out", ["export", "goodrun", "--out", "afile"], "afile: exists and is not a directory", ""),
    ("export", "read-only directory", ["export", "goodrun", "--out", "ro/e"], "read-only file system", "ro"),
    ("export", "unknown name", ["export", "goodrun", "--out", "o", "--merged"], "No such option: --merged", ""),
    ("export", "malformed file", ["export", "badrun", "--out", "o"], "not a supporttune run record", ""),
    ("bench", "missing path", ["bench", "--data", "nope"], "nope/train.jsonl: not found", ""),
    ("bench", "wrong kind of path", ["bench", "--out", "data"], "data: is a directory", ""),
    ("bench", "existing file as --out", ["bench", "--out", "afile"], "afile: exists (use --force", ""),
    ("bench", "read-only directory", ["bench", "--out", "ro/b.json"], "read-only file system", "ro"),
    ("bench", "bad number", ["bench", "--steps", "0"], "invalid steps", ""),
    ("bench", "bad number", ["bench", "--scaling", "0,2"], "--scaling takes", ""),
    ("bench", "bad number", ["bench", "--no-training", "--no-generation"], "nothing to measure", "real"),
    ("bench", "unknown name", ["bench", "--methods", "nope"], "unknown method(s) nope", ""),
    ("bench", "malformed file", ["bench", "--data", "baddata"], "baddata/train.jsonl:1: not valid JSON", ""),
    ("rate", "missing path", ["rate", "nope"], "nope: not a directory", ""),
    ("rate", "wrong kind of path", ["rate", "afile"], "afile: not a directory", ""),
    ("rate", "wrong kind of path", ["rate", "data"], "at least two entries", ""),
    ("rate", "existing file as --out", ["rate", "badsuite", "--export-preferences", "afile"], "afile: exists (use --force", ""),
    ("rate", "read-only directory", ["rate", "ro/suite"], "read-only file system", "ro"),
    ("rate", "bad number", ["rate", "data", "--planned", "0"], "invalid planned", ""),
    ("rate", "bad number", ["rate", "data", "--overlap", "2"], "invalid overlap", ""),
    ("rate", "unknown name", ["rate", "data", "--voter", "x"], "No such option: --voter", ""),
    ("rate", "malformed file", ["rate", "badsuite"], "suite_status.json: not valid JSON", ""),
    ("tune", "missing path", ["tune", "--config", "nope.yaml", "--trials", "1", "--out", "o"], "nope.yaml: tune config not found", ""),
    ("tune", "wrong kind of path", ["tune", "--config", "data", "--trials", "1", "--out", "o"], "data: tune config not found", ""),
    ("tune", "existing file as --out", ["tune", "--config", "bad.yaml", "--trials", "1", "--out", "afile"],
     "afile: exists and is not a directory", ""),
    ("tune", "read-only directory", ["tune", "--config", "bad.yaml", "--trials", "1", "--out", "ro/t"], "read-only file system", "ro"),
    ("tune", "bad number", ["tune", "--config", "bad.yaml", "--trials", "0", "--out", "o"], "invalid trials", ""),
    ("tune", "unknown name", ["tune", "--config", "bad.yaml", "--trials", "1", "--out", "o", "--bogus", "1"],
     "No such option: --bogus", ""),
    ("tune", "malformed file", ["tune", "--config", "bad.yaml", "--trials", "1", "--out", "o"], "bad.yaml: not valid YAML", ""),
    ("(none)", "unknown name", ["bogus"], "No such command 'bogus'", "real"),
]

# (command, class) pairs with no row, and why: the contract covers everything else.
NOT_APPLICABLE = {
    ("report", "existing file as --out"): "report writes into its SUITE argument (a file there: 'not a directory')",
    ("report", "bad number"): "report has no numeric option",
    ("chat", "existing file as --out"): "chat writes nothing",
    ("chat", "read-only directory"): "chat writes nothing",
    ("serve", "existing file as --out"): "serve writes nothing",
    ("serve", "read-only directory"): "serve writes nothing",
    ("export", "bad number"): "export has no numeric option",
}


@dataclass
class Result:
    code: int | None
    out: str
    err: str


def _record(path: Path, **fields) -> None:
    """A run directory whose record reads (chat/serve/export get past it; no adapter weights)."""
    from supporttune.rundir import ADAPTER, RunRecord

    path.mkdir()
    RunRecord(train={"method": "lora"}, identity={}, config_hash="0", model={"name": "x", "kind": "local",
              "location": str(path)}, prompt={}, **fields).write(path)
    (path / ADAPTER).write_text("{}")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    ws = tmp_path_factory.mktemp("errors")
    (ws / "afile").write_text("keep me\n")
    row = '{"id": "1", "thread_id": "t1", "input": "Where is my parcel?", "output": "Sorry! Order number?", "brand": "X"}\n'
    for name, text in (("data", row), ("baddata", "{oops\n")):
        (ws / name).mkdir()
        for split in ("train", "val", "test"):
            (ws / name / f"{split}.jsonl").write_text(text)
    (ws / "bad.jsonl").write_text("{oops\n")
    (ws / "bad.json").write_text("[{oops}]\n")
    (ws / "bad.yaml").write_text("method: [lora\n")
    (ws / "cols.csv").write_text("question,answer\nWhere is my parcel?,Sorry! Order number?\n")
    (ws / "cols_semicolon.csv").write_text("question;answer\nWhere is my parcel, please?;Sorry! Order number?\n")
    (ws / "cols_utf16.csv").write_bytes("question,answer\nWhere is my parcel?,Sorry!\n".encode("utf-16"))
    (ws / "one_column.csv").write_text("question\nWhere is my parcel?\n")
    (ws / "answers.jsonl").write_text('{"input": "Where is my parcel?", "reply": "Sorry!"}\n')
    (ws / "binary.csv").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01\x00")
    (ws / "extra.yaml").write_text("warp: 9\n")
    (ws / "zero_rank.yaml").write_text("variants:\n  - {method: lora, r: 0}\n")
    _record(ws / "goodrun")
    for name, lines in (("prefs_ok", ['{"id": "1", "chosen": "a", "rejected": "b"}']), ("prefs_empty", []),
                        ("prefs_half", ['{"id": "1", "chosen": "a"}']),
                        ("prefs_alien", ['{"prompt": [{"role": "user", "content": "never said"}], "chosen": "a", "rejected": "b"}']),
                        ("prefs_plain", ['{"prompt": "Customer message: Where is my parcel?\\nAgent response:", '
                                         '"chosen": "a", "rejected": "b"}'])):
        (ws / f"{name}.jsonl").write_text("".join(line + "\n" for line in lines))
    (ws / "badrun").mkdir()
    (ws / "badrun" / "config.yaml").write_text("train: [unclosed\n")
    (ws / "badrun" / "adapter_config.json").write_text("{}")
    (ws / "badsuite").mkdir()
    (ws / "badsuite" / "suite_status.json").write_text("{oops")
    (ws / "ro" / "suite").mkdir(parents=True)
    (ws / "ro" / "suite" / "suite_status.json").write_text('{"entries": []}')
    return ws


def _snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): (p.is_dir(), None if p.is_dir() else p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*"))}


def _env(ws: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "SUPPORTTUNE_DEBUG"}
    src = str(Path(__file__).resolve().parents[1] / "src")
    env.update(SUPPORTTUNE_HOME=str(ws / ".home"), SUPPORTTUNE_PROGRESS="0",
               PYTHONPATH=os.pathsep.join([src, *filter(None, [env.get("PYTHONPATH")])]))
    return env


def _read_only_prefix(ws: Path) -> list[str]:
    """A command prefix under which ``ws/ro`` is read-only, or a skip saying why there is none here."""
    if os.geteuid() != 0:
        os.chmod(ws / "ro", 0o555)  # unprivileged users are bound by the mode
        return []
    if not shutil.which("unshare"):
        pytest.skip("running as root without `unshare`: no way to make a read-only directory here")
    mount = f'mount --bind -o ro "{ws / "ro"}" "{ws / "ro"}" && exec "$@"'
    probe = subprocess.run(["unshare", "-m", "sh", "-c", mount, "sh", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"running as root and cannot bind-mount read-only: {probe.stderr.decode().strip()}")
    return ["unshare", "-m", "sh", "-c", mount, "sh"]


def _run(args: list[str], how: str, ws: Path, monkeypatch, capsys) -> Result:
    if how:
        prefix = _read_only_prefix(ws) if how == "ro" else []
        res = subprocess.run([*prefix, sys.executable, "-m", "supporttune", *args], cwd=ws, env=_env(ws),
                             capture_output=True, text=True, timeout=300)
        return Result(res.returncode, res.stdout, res.stderr)
    from supporttune import entry

    for k, v in _env(ws).items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("SUPPORTTUNE_DEBUG", raising=False)
    monkeypatch.chdir(ws)
    monkeypatch.setattr(sys, "argv", ["supporttune", *args])
    capsys.readouterr()
    code = 0
    try:
        entry.main()
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return Result(code, out, err)


@pytest.fixture()
def busy_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


# Rows that read the embedded model's GGUF metadata before their error (`run` checks every variant's target
# modules first): ~4 s each, so they run in the full suite only. Another row covers the same command and class.
SLOW_ROWS = [["run", "--data", "bad.jsonl", "--out", "o"]]


@pytest.mark.parametrize("command,klass,args,needle,how",
                         [pytest.param(*r, marks=[pytest.mark.slow] if r[2] in SLOW_ROWS else []) for r in ROWS],
                         ids=[f"{r[0]}-{r[1].replace(' ', '_')}-{i}" for i, r in enumerate(ROWS)])
def test_bad_input_is_one_line_and_touches_nothing(command, klass, args, needle, how, workspace, busy_port,
                                                   monkeypatch, capsys):
    args = [a.replace("{busy_port}", str(busy_port)) for a in args]
    before = _snapshot(workspace)
    res = _run(args, how, workspace, monkeypatch, capsys)
    assert res.code not in (0, None), (res.code, res.out, res.err)
    lines = res.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("supporttune: error: "), res.err
    assert needle in lines[0], lines[0]
    assert "Traceback" not in res.out + res.err and not res.out.strip(), res.out
    assert _snapshot(workspace) == before, "the failed command created or changed files"


def test_every_command_and_class_is_covered():
    import typer.main

    from supporttune.cli import app

    commands = set(typer.main.get_command(app).commands)
    covered = {(r[0], r[1]) for r in ROWS}
    missing = [(c, k) for c in sorted(commands) for k in CLASSES if (c, k) not in covered and (c, k) not in NOT_APPLICABLE]
    assert not missing, f"add a row (or a reason in NOT_APPLICABLE) for: {missing}"


@pytest.mark.parametrize("encoding,sep", [("utf-16", ";"), ("utf-16-le", ","), ("utf-8-sig", "\t"), ("utf-8", "|")])
def test_utf16_and_semicolon_csvs_are_read(tmp_path, encoding, sep):
    """Issue 24: a UTF-16 CSV was called binary and a ';' CSV had '1 column'; both are what Excel saves."""
    import csv
    import io

    from supporttune.data.prepare import detect_format
    from supporttune.data.tabular import read_tabular

    buf = io.StringIO()
    csv.writer(buf, delimiter=sep).writerows([["input", "output", "brand"], ["Where is my parcel, please?", "Sorry, DM us", "X"]])
    text = buf.getvalue()
    path = tmp_path / "pairs.csv"
    path.write_bytes(text.encode(encoding))
    assert detect_format(path) == "csv"
    pairs = read_tabular(path, "csv").pairs
    assert [(p.input, p.output, p.brand) for p in pairs] == [("Where is my parcel, please?", "Sorry, DM us", "X")]
    twcs = tmp_path / "twcs.csv"
    twcs.write_bytes(sep.join(["tweet_id", "author_id", "inbound", "text", "in_response_to_tweet_id"]).encode(encoding))
    assert detect_format(twcs) == "twcs"
