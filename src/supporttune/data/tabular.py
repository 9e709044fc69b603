"""Generic support logs: JSONL, CSV, or the seed's ``train_data.json`` (a list of {input, output}).

Column names are configurable; ``brand`` and ``thread_id`` are optional. Without a thread column
every row is its own thread.

Alpaca-style files ({instruction, input, output}) keep their instruction: it is the start of the
customer message, followed by a blank line and the input (Alpaca's own prompt reads them in that
order); a row with an empty input is the instruction alone. The instruction is not made a system
prompt: the one prompt builder (prompts.py) owns the system text, and a per-row instruction is
part of what the customer asked. ``--instruction-col ''`` ignores the column.
"""

from __future__ import annotations

from pathlib import Path

from .readers import read_csv, read_json_records, require_columns
from .records import RawPair, ReadResult


def _text(value) -> str | None:
    """A cell as text; None for a missing cell (pandas gives NaN floats for empty CSV cells)."""
    if value is None or isinstance(value, float):
        return None
    return str(value)


def _message(row: dict, input_col: str, instruction_col: str | None) -> str | None:
    inp = _text(row.get(input_col))
    if instruction_col is None:
        return inp
    parts = [p.strip() for p in (_text(row.get(instruction_col)), inp) if p is not None and p.strip()]
    return "\n\n".join(parts) or None


def _to_pairs(path: Path, rows: list[dict], columns: list[str], input_col: str, output_col: str,
              brand_col: str, thread_col: str, instruction_col: str = "") -> ReadResult:
    instruction = instruction_col if instruction_col and instruction_col in columns and instruction_col != input_col else None
    require_columns(path, columns, [output_col] if instruction and input_col not in columns else [input_col, output_col],
                    flags={input_col: "--input-col", output_col: "--output-col"})
    result = ReadResult(pairs=[], rows_read=len(rows))
    for i, row in enumerate(rows):
        inp, out = _message(row, input_col, instruction), _text(row.get(output_col))
        if inp is None or out is None:
            result.drop("missing_value")
            continue
        rid = str(row.get("id") or f"row-{i}")
        thread = str(row.get(thread_col) or rid)
        result.pairs.append(RawPair(id=rid, thread_id=thread, input=inp, output=out, brand=str(row.get(brand_col) or "")))
    return result


def read_tabular(path: Path, fmt: str, input_col: str = "input", output_col: str = "output",
                 brand_col: str = "brand", thread_col: str = "thread_id", instruction_col: str = "instruction") -> ReadResult:
    if fmt == "csv":
        df = read_csv(path)
        rows = df.to_dict("records")
        columns = list(df.columns)
    else:
        rows = read_json_records(path)
        columns = sorted({k for r in rows for k in r}) if rows else []
    return _to_pairs(path, rows, columns, input_col, output_col, brand_col, thread_col, instruction_col)
