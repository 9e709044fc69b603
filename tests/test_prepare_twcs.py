"""The real shared TWCS sample: counts, redaction and the split invariant."""

import json
import re


def test_prepare_shared_twcs_sample(tmp_path, twcs_path):
    from supporttune.data.config import PrepareConfig
    from supporttune.data.prepare import prepare

    rep = prepare(PrepareConfig(input=str(twcs_path), format="twcs", out=tmp_path / "d"))
    assert rep["pairs_kept"] > 1000
    rows = {s: [json.loads(x) for x in (tmp_path / "d" / f"{s}.jsonl").read_text().splitlines()] for s in ("train", "val", "test")}
    pii = re.compile(r"https?://|www\.|(?<![\w_])@\w|[\w.+-]+@[\w-]+\.\w")
    for split in rows.values():
        for r in split:
            assert not pii.search(r["input"]) and not pii.search(r["output"]), r
    threads = [{r["thread_id"] for r in rows[s]} for s in rows]
    assert not (threads[0] & threads[1]) and not (threads[0] & threads[2]) and not (threads[1] & threads[2])
    assert rep["pairs_found"] == rep["pairs_kept"] + rep["dropped_total"]
    assert set(rep["dropped"]) <= {"non_english", "too_short", "too_long", "empty", "duplicate",
                                   "brand_tweet_not_a_reply", "reply_to_brand_tweet", "reply_to_tweet_not_in_file"}
