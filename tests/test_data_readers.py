import json

import pytest

from supporttune.data.config import PrepareConfig
from supporttune.data.builtin import generate
from supporttune.data.prepare import prepare
from supporttune.data.split import split_by_thread
from supporttune.data.twcs import read_twcs
from supporttune.core.errors import UserError

HEADER = "tweet_id,author_id,inbound,created_at,text,response_tweet_id,in_response_to_tweet_id\n"
# Thread A: customer 10 -> brand 11 -> customer 12 -> customer 13 (own follow-up) -> brand 14
# Thread B: customer 20 -> brand 21; brand 30 answers a tweet not in the file; brand 40 is no reply.
HAND_MADE = HEADER + """10,c1,True,t,@Acme my parcel is late,11,
11,Acme,False,t,@c1 Sorry! DM us the order number ^JS,12,10
12,c1,True,t,@Acme sent it,13,11
13,c1,True,t,@Acme also it was meant for a gift,14,12
14,Acme,False,t,@c1 Thanks we will check -Becky,,13
20,c2,True,t,@Bolt how do I reset my password?,21,
21,Bolt,False,t,@c2 Use the reset link at https://bolt.com/reset,,20
30,Acme,False,t,@c9 hello there friend,,999
40,Acme,False,t,New phones in store now,,
"""


def write(tmp_path, name, text, mode="w"):
    p = tmp_path / name
    if mode == "wb":
        p.write_bytes(text)
    else:
        p.write_text(text, encoding="utf-8")
    return p


def test_twcs_thread_reconstruction(tmp_path):
    res = read_twcs(write(tmp_path, "t.csv", HAND_MADE))
    by_id = {p.id: p for p in res.pairs}
    assert set(by_id) == {"twcs-11", "twcs-14", "twcs-21"}
    assert by_id["twcs-11"].input == "@Acme my parcel is late"
    # consecutive customer tweets are joined oldest first
    assert by_id["twcs-14"].input == "@Acme sent it\n@Acme also it was meant for a gift"
    assert by_id["twcs-14"].brand == "Acme"
    # one conversation, one thread id (its root tweet)
    assert by_id["twcs-11"].thread_id == by_id["twcs-14"].thread_id == "twcs-10"
    assert by_id["twcs-21"].thread_id == "twcs-20"
    assert res.dropped == {"reply_to_tweet_not_in_file": 1, "brand_tweet_not_a_reply": 1}


def test_split_keeps_threads_whole_and_is_deterministic():
    examples = [{"thread_id": f"t{i // 3}", "id": str(i)} for i in range(300)]
    a = split_by_thread(examples, 0.1, 0.2, seed=7)
    b = split_by_thread(examples, 0.1, 0.2, seed=7)
    assert a == b
    owners = {}
    for name, rows in a.items():
        for r in rows:
            assert owners.setdefault(r["thread_id"], name) == name
    assert sum(len(v) for v in a.values()) == 300
    assert 55 <= len(a["test"]) <= 66 and 27 <= len(a["val"]) <= 36
    assert split_by_thread(examples, 0.1, 0.2, seed=8) != a


def test_whole_file_as_test_set():
    examples = [{"thread_id": f"t{i}", "id": str(i)} for i in range(50)]
    s = split_by_thread(examples, 0.0, 1.0, seed=1)
    assert len(s["test"]) == 50 and not s["train"] and not s["val"]


def test_builtin_is_varied_and_deterministic():
    a, b = generate(300, seed=3), generate(300, seed=3)
    assert [p.input for p in a.pairs] == [p.input for p in b.pairs]
    assert len(a.pairs) > 330
    assert len({p.brand for p in a.pairs}) == 6
    intents = {p.meta["intent"] for p in a.pairs}
    assert {"billing", "delivery", "account", "technical", "refund", "praise"} <= intents
    firsts = [p.input for p in a.pairs if p.id.endswith("-0")]
    assert len(set(firsts)) > 0.9 * len(firsts)  # first turns rarely repeat; follow-ups ("DM sent") may


def test_prepare_builtin_writes_tagged_splits(tmp_path):
    report = prepare(PrepareConfig(input="builtin", out=tmp_path / "d", builtin_threads=120))
    rows = [json.loads(line) for line in (tmp_path / "d" / "train.jsonl").read_text().splitlines()]
    keys = {"id", "thread_id", "input", "output", "brand", "sentiment", "priority", "category"}
    assert rows and all(keys <= set(r) for r in rows)
    assert report["pairs_kept"] == sum(s["pairs"] for s in report["splits"].values())
    assert report["pairs_found"] == report["pairs_kept"] + report["dropped_total"]
    assert all("@" not in r["input"] and "http" not in r["output"] for r in rows)
    assert {r["sentiment"] for r in rows} == {"negative", "neutral", "positive"}


def test_prepare_tabular_formats(tmp_path):
    seed_json = [{"input": "Where is my order?", "output": "Please DM us your order number."},
                 {"input": "My card was charged twice", "output": "Sorry! Please DM us the details."}] * 3
    p = write(tmp_path, "train_data.json", json.dumps(seed_json))
    rep = prepare(PrepareConfig(input=str(p), out=tmp_path / "j", val_frac=0, test_frac=1))
    assert rep["format"] == "json" and rep["pairs_kept"] == 2 and rep["dropped"] == {"duplicate": 4}
    assert rep["splits"]["test"]["pairs"] == 2
    csv = write(tmp_path, "logs.csv", "msg,reply,company\nhello my app crashes,Try reinstalling it please,Bolt\n")
    rep = prepare(PrepareConfig(input=str(csv), out=tmp_path / "c", input_col="msg", output_col="reply",
                                brand_col="company", val_frac=0, test_frac=0))
    row = json.loads((tmp_path / "c" / "train.jsonl").read_text())
    assert row["brand"] == "Bolt" and row["input"] == "hello my app crashes"


@pytest.mark.parametrize("name,content,fmt,message", [
    ("missing.csv", None, "auto", "file not found"),
    ("cols.csv", "a,b\n1,2\n", "csv", "missing column(s) input, output"),
    ("twcs.csv", "tweet_id,text\n1,hi\n", "twcs", "missing column(s) author_id, inbound"),
    ("bin.csv", b"\x00\x01\x02garbage", "csv", "binary file"),
    ("latin.csv", "input,output\ncaf\xe9 order,ok reply\n".encode("latin-1"), "csv", "unreadable encoding"),
    ("empty.csv", "", "csv", "file is empty"),
    ("bad.json", "[{\"input\": ", "json", "not valid JSON"),
    ("short.jsonl", '{"input": "a", "output": "b"}\n', "jsonl", "no pairs left after cleaning (too_short=1)"),
    ("data.xml", "<x/>", "auto", "cannot tell the format"),
])
def test_bad_input_gets_one_clear_line(tmp_path, name, content, fmt, message):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises(UserError) as e:
        prepare(PrepareConfig(input=str(path), format=fmt, out=tmp_path / "out"))
    assert message in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "out").exists()


def test_existing_output_not_overwritten_without_force(tmp_path):
    out = tmp_path / "d"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(UserError, match="--force"):
        prepare(PrepareConfig(input="builtin", out=out, builtin_threads=20))
    assert (out / "keep.txt").read_text() == "mine"
    prepare(PrepareConfig(input="builtin", out=out, builtin_threads=20, force=True))
    assert not (out / "keep.txt").exists()


def test_config_rejects_bad_fractions():
    with pytest.raises(ValueError, match=r"val_frac \+ test_frac must be <= 1 \(got 0.6 \+ 0.6\)"):
        PrepareConfig(val_frac=0.6, test_frac=0.6)
    with pytest.raises(ValueError, match="val_frac"):
        PrepareConfig(val_frac=-0.1)
    assert PrepareConfig(val_frac=0.3, test_frac=0.7).test_frac == 0.7  # a sum of exactly 1 is allowed


@pytest.mark.parametrize("codec", ["utf-8", "utf-16", "utf-16-le"])
def test_messages_jsonl_is_recognised_in_any_encoding(tmp_path, codec):
    import json

    from supporttune.data.prepare import HEAD, detect_format

    row = {"messages": [{"role": "user", "content": "Où est mon colis ? 📦"}, {"role": "assistant", "content": "Bonjour!"}]}
    path = tmp_path / "chats.jsonl"
    path.write_bytes((json.dumps(row, ensure_ascii=False) + "\n").encode(codec))
    assert detect_format(path) == "messages"
    # a long file whose first chunk ends inside the 4-byte emoji: the first row still decides
    rest = (json.dumps(row, ensure_ascii=False) + "\n") * (HEAD // 40)

    def body(pad: int) -> bytes:
        return (json.dumps(dict(row, note="x" * pad)) + "\n" + rest).encode(codec)

    def cut_inside(b: bytes) -> bool:
        try:
            b[:HEAD].decode(codec)
        except UnicodeDecodeError:
            return True
        return False

    pad = next(n for n in range(400) if cut_inside(body(n)))
    path.write_bytes(body(pad))
    assert detect_format(path) == "messages"
    path.write_bytes(json.dumps({"input": "a", "output": "b"}).encode(codec) + "\n".encode(codec))
    assert detect_format(path) == "jsonl"
