"""ratings.jsonl under stress: two writer processes at once, a write cut short, duplicates refused, nothing rewritten."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from supporttune.rate.store import FILENAME, DuplicateVote, Store, read_votes


def _vote(rater, k, choice="left", left="a", right="b"):
    return {"v": 1, "rater": rater, "message_id": f"m{k}", "left": left, "right": right, "choice": choice,
            "flags": {"left": ["rude"]} if k % 5 == 0 else {}, "note": "x" * (k % 300)}  # lines of varied length


def _writer(path, rater, n, start):
    start.wait()
    store = Store(path)
    for k in range(n):
        store.append(_vote(rater, k))


def test_two_writer_processes_lose_nothing(tmp_path):
    path = tmp_path / FILENAME
    ctx = mp.get_context("spawn")
    start = ctx.Event()
    procs = [ctx.Process(target=_writer, args=(path, r, 150, start)) for r in ("ann", "bob")]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b"" and len(lines) == 301  # 300 whole lines, nothing interleaved
    votes = [json.loads(x) for x in lines[:-1]]
    for r in ("ann", "bob"):
        assert sorted(int(v["message_id"][1:]) for v in votes if v["rater"] == r) == list(range(150))


def test_the_same_item_from_two_processes_is_written_once(tmp_path):
    """Two server processes for one rater (two tabs on two ports) race for the same vote: one wins."""
    path = tmp_path / FILENAME
    code = textwrap.dedent(f"""
        import sys
        from supporttune.rate.store import Store, DuplicateVote
        s = Store({str(path)!r})
        try:
            s.append({{"rater": "ann", "message_id": "m1", "left": "a", "right": "b", "choice": sys.argv[1], "flags": {{}}}})
            print("written")
        except DuplicateVote:
            print("duplicate")
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = [subprocess.Popen([sys.executable, "-c", code, c], stdout=subprocess.PIPE, text=True, env=env) for c in ("left", "right")]
    outs = sorted(p.communicate(timeout=60)[0].strip() for p in procs)
    assert outs == ["duplicate", "written"]
    assert len(read_votes(path)) == 1


def test_an_interrupted_write_costs_no_later_vote(tmp_path):
    path = tmp_path / FILENAME
    store = Store(path)
    store.append(_vote("ann", 1))
    whole = (json.dumps(_vote("ann", 2)) + "\n").encode()
    with open(path, "ab") as f:  # a writer killed half-way through its line
        f.write(whole[: len(whole) // 2])
    assert [v["message_id"] for v in read_votes(path)] == ["m1"]  # readers skip the fragment
    other = Store(path)  # e.g. the restarted server
    assert [v["message_id"] for v in other.votes] == ["m1"]
    other.append(_vote("ann", 2))  # the interrupted vote, given again
    other.append(_vote("ann", 3))
    assert [v["message_id"] for v in read_votes(path)] == ["m1", "m2", "m3"]
    assert other.skipped_lines == 1
    store.refresh()  # the first process follows what the other appended, fragment skipped
    assert [v["message_id"] for v in store.votes] == ["m1", "m2", "m3"] and store.skipped_lines == 1
    assert path.read_bytes().startswith((json.dumps(_vote("ann", 1)) + "\n").encode())  # appended, never rewritten


def test_a_writer_killed_mid_run_leaves_whole_lines(tmp_path):
    """SIGKILL a process that appends as fast as it can: every line but possibly a last fragment parses."""
    path = tmp_path / FILENAME
    code = textwrap.dedent(f"""
        from supporttune.rate.store import Store
        s = Store({str(path)!r})
        k = 0
        while True:
            s.append({{"rater": "ann", "message_id": f"m{{k}}", "left": "a", "right": "b", "choice": "tie", "flags": {{}}}})
            k += 1
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    p = subprocess.Popen([sys.executable, "-c", code], env=env)
    import time

    deadline = time.time() + 60
    while (not path.exists() or path.stat().st_size < 2000) and time.time() < deadline:
        time.sleep(0.05)
    os.kill(p.pid, signal.SIGKILL)
    p.wait(10)
    n = len(read_votes(path))
    assert n >= 20
    Store(path).append(_vote("bob", 1))
    votes = read_votes(path)
    assert len(votes) == n + 1 and votes[-1]["rater"] == "bob"


def test_duplicates_and_invalid_votes_write_nothing(tmp_path):
    path = tmp_path / FILENAME
    store = Store(path)
    store.append(_vote("ann", 1, left="a", right="b"))
    size = path.stat().st_size
    with pytest.raises(DuplicateVote):
        store.append(_vote("ann", 1, choice="skip", left="b", right="a"))  # the same message and pair, sides swapped
    with pytest.raises(ValueError):
        store.append({"rater": "ann", "choice": "maybe"})
    assert path.stat().st_size == size
    store.append(_vote("bob", 1))  # another rater may judge the same item
    assert len(read_votes(path)) == 2
