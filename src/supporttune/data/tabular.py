"""Generic support logs: JSONL, CSV, or the seed's ``train_data.json`` (a list of {input, output}).

Column names are configurable; ``brand`` and ``thread_id`` are optional. Without a thread column
every row is its own thread.
"""

from __future__ import annotations

from pathlib import Path

from .readers import read_csv, read_json_records, require_columns
from .records import RawPair, ReadResult


def _to_pairs(path: Path, rows: list[dict], columns: list[str], input_col: str, output_col: str,
              brand_col: str, thread_col: str) -> ReadResult:
    require_columns(path, columns, [input_col, output_col])
    result = ReadResult(pairs=[], rows_read=len(rows))
    for i, row in enumerate(rows):
        inp, out = row.get(input_col), row.get(output_col)
        if inp is None or out is None or (isinstance(inp, float) or isinstance(out, float)):
            result.drop("missing_value")
            continue
        rid = str(row.get("id") or f"row-{i}")
        thread = str(row.get(thread_col) or rid)
        result.pairs.append(RawPair(id=rid, thread_id=thread, input=str(inp), output=str(out),
                                    brand=str(row.get(brand_col) or "")))
    return result


def read_tabular(path: Path, fmt: str, input_col: str = "input", output_col: str = "output",
                 brand_col: str = "brand", thread_col: str = "thread_id") -> ReadResult:
    if fmt == "csv":
        df = read_csv(path)
        rows = df.to_dict("records")
        columns = list(df.columns)
    else:
        rows = read_json_records(path)
        columns = sorted({k for r in rows for k in r}) if rows else []
    return _to_pairs(path, rows, columns, input_col, output_col, brand_col, thread_col)
