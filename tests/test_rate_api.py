"""The rating server's HTTP contract: blind comparisons, votes on disk, and a JSON 4xx that writes nothing for bad requests."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from test_rate_logic import ENTRIES, make_suite

from supporttune.rate.app import RatingSession, create_app
from supporttune.rate.store import FILENAME, read_votes


@pytest.fixture()
def suite(tmp_path):
    return make_suite(tmp_path / "suite")


def client(suite, key=None, rater=None, **kw):
    return TestClient(create_app(RatingSession(suite, rater=rater, seed=0), api_key=key, **kw))


def lines(suite) -> int:
    path = suite / FILENAME
    return len(path.read_bytes().splitlines()) if path.exists() else 0


def test_a_comparison_is_blind_and_a_vote_lands_on_disk(suite):
    c = client(suite)
    page = c.get("/")
    assert page.status_code == 200 and "Which reply is better?" in page.text and page.headers["x-frame-options"] == "DENY"
    t = c.get("/api/next", params={"rater": "ann"}).json()
    assert set(t) == {"done", "rater", "token", "message", "a", "b", "progress"} and not t["done"]
    for name in ENTRIES:  # no entry name anywhere in what the page receives
        assert name not in json.dumps(t)
    assert c.get("/api/next", params={"rater": "ann"}).json()["token"] == t["token"]  # a reload: same comparison
    r = c.post("/api/vote", json={"rater": "ann", "token": t["token"], "choice": "a", "flags": {"b": ["rude", "unsafe"]}})
    assert r.status_code == 200 and r.json()["reference"].startswith("Real agent reply")
    assert r.json()["progress"] == {"rated": 1, "skipped": 0, "planned": 72, "available": 72}
    [v] = read_votes(suite / FILENAME)
    assert v["rater"] == "ann" and v["choice"] == "left" and v["flags"] == {"left": [], "right": ["rude", "unsafe"]}
    assert {v["left"], v["right"]} <= set(ENTRIES) and v["left"] != v["right"]
    assert c.post("/api/vote", json={"rater": "ann", "token": t["token"], "choice": "b"}).status_code == 404  # used up
    t2 = c.get("/api/next", params={"rater": "ann"}).json()
    assert t2["token"] != t["token"]
    assert c.post("/api/skip", json={"rater": "ann", "token": t2["token"]}).json()["progress"]["skipped"] == 1
    assert lines(suite) == 2


def test_history_is_passed_to_the_page(suite):
    c = client(suite)
    for _ in range(30):
        t = c.get("/api/next", params={"rater": "ann"}).json()
        if t["message"]["history"]:
            assert t["message"]["history"][0] == {"role": "user", "content": t["message"]["history"][0]["content"]}
            return
        c.post("/api/skip", json={"rater": "ann", "token": t["token"]})
    pytest.fail("no message with history came up")


def test_a_restarted_server_continues_where_the_rater_stopped(suite):
    c = client(suite)
    for _ in range(5):
        t = c.get("/api/next", params={"rater": "ann"}).json()
        c.post("/api/vote", json={"rater": "ann", "token": t["token"], "choice": "tie"})
    again = client(suite)
    t = again.get("/api/next", params={"rater": "ann"}).json()
    assert t["progress"]["rated"] == 5
    assert again.post("/api/vote", json={"rater": "ann", "token": t["token"], "choice": "b"}).status_code == 200
    assert len({(v["message_id"], *sorted((v["left"], v["right"]))) for v in read_votes(suite / FILENAME)}) == 6


BAD = [  # (request, status) - each must write nothing
    (lambda c, tok: c.post("/api/vote", json={"rater": "ann", "token": "no-such-token-123", "choice": "a"}), 404),
    (lambda c, tok: c.post("/api/vote", content=b"{not json", headers={"content-type": "application/json"}), 400),
    (lambda c, tok: c.post("/api/vote", content=b"\xff\xfe", headers={"content-type": "application/json"}), 400),
    (lambda c, tok: c.post("/api/vote", content=json.dumps({"rater": "ann", "token": tok, "choice": "a"}),
                           headers={"content-type": "text/plain"}), 415),
    (lambda c, tok: c.post("/api/vote", json={"rater": "ann", "token": tok, "choice": "left"}), 422),
    (lambda c, tok: c.post("/api/vote", json={"rater": "ann", "token": tok}), 422),
    (lambda c, tok: c.post("/api/vote", json=[1, 2]), 422),
    (lambda c, tok: c.post("/api/vote", json={"rater": "ann", "token": tok, "choice": "a", "flags": {"a": ["smelly"]}}), 422),
    (lambda c, tok: c.post("/api/vote", json={"rater": "ann", "token": tok, "choice": "a", "flags": {"c": []}}), 422),
    (lambda c, tok: c.post("/api/vote", json={"rater": "ann", "token": tok, "choice": "a", "winner": "qlora-r8"}), 422),
    (lambda c, tok: c.post("/api/vote", json={"rater": "bob", "token": tok, "choice": "a"}), 403),  # another rater's token
    (lambda c, tok: c.post("/api/vote", json={"rater": "<script>", "token": tok, "choice": "a"}), 422),
    (lambda c, tok: c.post("/api/vote", json={"rater": "ann", "token": tok, "choice": "a", "flags": {"a": ["x" * 20000]}}), 413),
    (lambda c, tok: c.post("/api/skip", json={"rater": "ann"}), 422),
    (lambda c, tok: c.get("/api/vote"), 405),
    (lambda c, tok: c.get("/api/nothing"), 404),
    (lambda c, tok: c.get("/api/next", params={"rater": ""}), 422),
]


@pytest.mark.parametrize("k", range(len(BAD)))
def test_bad_requests_get_a_json_4xx_and_write_nothing(suite, k):
    c = client(suite)
    tok = c.get("/api/next", params={"rater": "ann"}).json()["token"]
    request, status = BAD[k]
    r = request(c, tok)
    assert r.status_code == status, r.text
    assert set(r.json()["error"]) == {"message", "type"} and r.json()["error"]["message"]
    assert lines(suite) == 0
    ok = c.post("/api/vote", json={"rater": "ann", "token": tok, "choice": "a"})  # the open comparison still stands
    assert ok.status_code == 200 and lines(suite) == 1


def test_api_key_fixed_rater_and_loopback_host(suite):
    c = client(suite, key="s3cret", rater="ann")
    cfg = c.get("/api/config").json()
    assert cfg["rater"] == "ann" and cfg["needs_key"] is True and cfg["planned"] == 200
    assert [f["name"] for f in cfg["flags"]] == ["wrong_info", "rude", "off_topic", "unsafe"]
    assert c.get("/").status_code == 200  # the page holds no data; it asks for the key
    for headers in ({}, {"Authorization": "Bearer nope"}, {"X-API-Key": "S3CRET"}):
        r = c.get("/api/next", headers=headers)
        assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
    t = c.get("/api/next", headers={"X-API-Key": "s3cret"}).json()
    assert t["rater"] == "ann"
    bad = c.post("/api/vote", json={"rater": "bob", "token": t["token"], "choice": "a"}, headers={"Authorization": "Bearer s3cret"})
    assert bad.status_code == 403 and lines(suite) == 0
    assert c.post("/api/vote", json={"rater": "ann", "token": t["token"], "choice": "b"}).status_code == 401
    assert c.post("/api/vote", json={"token": t["token"], "choice": "b"}, headers={"Authorization": "Bearer s3cret"}).status_code == 422
    assert c.post("/api/vote", json={"rater": "ann", "token": t["token"], "choice": "b"},
                  headers={"Authorization": "Bearer s3cret"}).status_code == 200 and lines(suite) == 1
    local = client(suite, loopback_only=True)
    assert local.get("/api/config", headers={"host": "evil.example:8100"}).status_code == 421  # DNS rebinding
    assert local.get("/api/config", headers={"host": "127.0.0.1:8100"}).status_code == 200


def test_a_disk_error_is_reported_and_the_comparison_stays_open(suite):
    session = RatingSession(suite, seed=0)
    c = TestClient(create_app(session))
    t = c.get("/api/next", params={"rater": "ann"}).json()
    real = session.store.append

    def full_disk(vote):
        raise OSError(28, "No space left on device")

    session.store.append = full_disk
    r = c.post("/api/vote", json={"rater": "ann", "token": t["token"], "choice": "a"})
    assert r.status_code == 507 and "No space left on device" in r.json()["error"]["message"]
    session.store.append = real
    assert c.post("/api/vote", json={"rater": "ann", "token": t["token"], "choice": "a"}).status_code == 200


def test_a_rater_who_has_seen_everything_is_told_so(tmp_path):
    suite = make_suite(tmp_path / "small", n_messages=1)
    c = client(suite)
    for _ in range(6):
        t = c.get("/api/next", params={"rater": "ann"}).json()
        assert c.post("/api/vote", json={"rater": "ann", "token": t["token"], "choice": "both_bad"}).status_code == 200
    done = c.get("/api/next", params={"rater": "ann"}).json()
    assert done["done"] and done["progress"]["rated"] == 6


def test_cli_export_and_one_line_errors(suite, tmp_path, cli):  # `python -m supporttune` in-process (conftest)
    c = client(suite)
    for choice in ("a", "b", "tie", "both_bad", "a"):
        t = c.get("/api/next", params={"rater": "ann"}).json()
        c.post("/api/vote", json={"rater": "ann", "token": t["token"], "choice": choice})
    out = tmp_path / "prefs.jsonl"
    res = cli("rate", str(suite), "--export-preferences", str(out))
    assert res.returncode == 0 and "wrote 3 preference pairs (from 5 decided votes" in res.stdout, res.stderr
    assert len(out.read_text().splitlines()) == 3
    lonely = tmp_path / "lonely"
    make_suite(lonely)
    import shutil

    for name in ("pt-10", "constant-dm", "retrieval-tfidf"):
        shutil.rmtree(next(lonely.glob(f"*/{name}")))
    for args, needle in ((["rate", str(tmp_path / "nope")], "not a directory"),
                         (["rate", str(lonely)], "at least two entries"),
                         (["rate", str(suite), "--rater", "a/b"], "rater name"),
                         (["rate", str(suite), "--prompt-from", str(tmp_path)], "goes with --export-preferences"),
                         (["rate", str(suite), "--export-preferences", str(out), "--prompt-from", str(tmp_path)],
                          "exists (use --force"),
                         (["rate", str(suite), "--export-preferences", str(out), "--force", "--prompt-from", str(tmp_path)],
                          "not a training run")):
        res = cli(*args)
        errors = [x for x in res.stderr.splitlines() if x.startswith("supporttune: error:")]
        assert res.returncode != 0 and len(errors) == 1 and needle in errors[0] and "Traceback" not in res.stderr, res.stderr
