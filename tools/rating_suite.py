"""Assemble a suite directory for the rating page / simulated rater from prediction files and baselines.

Trained replies often exist only as evaluate's predictions.jsonl files made elsewhere (a GPU box);
the rating page (`supporttune rate`) and the simulated rater (`python -m supporttune.rate.simulate`)
read a suite directory. This builds one: each NAME=PATH becomes ``variants/NAME/eval/predictions.jsonl``
(copied, so keep the suite outside the repo when the files hold shared data), and each ``--baseline``
is computed on the same prepared data by `supporttune evaluate --baseline B` (CPU; retrieval and
constant take seconds, zero-shot minutes). The prediction files must answer the data's test split.

    python tools/rating_suite.py --data .dev/twcs --out /tmp/rating_suite \\
        recipe-s1=/tmp/dpo7/dpo/seed1/parent.jsonl dpo-s1=/tmp/dpo7/dpo/seed1/child.jsonl \\
        --baseline retrieval --baseline constant
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path


def read_ids(path: Path) -> list[str]:
    return [str(json.loads(line)["id"]) for line in path.read_text().splitlines() if line.strip()]


def add_variant(suite: Path, name: str, predictions: Path, test_ids: set[str]) -> None:
    """Copy one prediction file in as a variant; it must answer exactly the test split's messages."""
    got = set(read_ids(predictions))
    if got != test_ids:
        sys.exit(f"{predictions}: answers {len(got)} messages, {len(got & test_ids)} of the {len(test_ids)} test ones")
    out = suite / "variants" / name / "eval"
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(predictions, out / "predictions.jsonl")


def add_baseline(suite: Path, name: str, data: Path, extra: list[str]) -> None:
    """`supporttune evaluate --baseline NAME` into baselines/NAME (no semantic sim / perplexity: not needed)."""
    cmd = [sys.executable, "-m", "supporttune", "evaluate", "--baseline", name, "--data", str(data),
           "--out", str(suite / "baselines" / name), "--no-semantic", "--no-perplexity", "--bootstrap", "100",
           "--device", "cpu", *extra]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("variants", nargs="+", metavar="NAME=PREDICTIONS.jsonl")
    ap.add_argument("--data", type=Path, required=True, help="prepared data directory (its test split)")
    ap.add_argument("--out", type=Path, required=True, help="suite directory to create")
    ap.add_argument("--baseline", action="append", default=[], help="baseline to compute (repeatable)")
    ap.add_argument("--eval-arg", action="append", default=[], help="extra argument for evaluate (repeatable)")
    args = ap.parse_args(argv)
    test_ids = set(read_ids(args.data / "test.jsonl"))
    args.out.mkdir(parents=True, exist_ok=True)
    for spec in args.variants:
        name, sep, path = spec.partition("=")
        if not sep or not name or not Path(path).is_file():
            sys.exit(f"{spec}: expected NAME=PATH to an existing predictions.jsonl")
        add_variant(args.out, name, Path(path), test_ids)
    for name in args.baseline:
        add_baseline(args.out, name, args.data, args.eval_arg)
    print(f"suite: {args.out} ({len(args.variants)} variants, {len(args.baseline)} baselines)")


if __name__ == "__main__":
    main()
