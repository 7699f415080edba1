"""CSV and JSON Lines text -> numbered rows, and the per-row error record.

A row keeps the line number it starts on in the file (the CSV header is line 1), so an
error report points at the line an operator opens in an editor. Blank cells and JSON
``null`` are absent values. JSON numbers are read as :class:`~decimal.Decimal` (never a
binary float), so ``12.30`` stays exactly 12.30.

Must not import: faust, aiokafka, confluent_kafka, psycopg, anything under ``streams``.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

FileFormat = Literal["csv", "jsonl"]


class FileUnreadable(ValueError):
    """Raised when a file cannot be read as rows at all (no header, not text, bad format)."""


@dataclass(frozen=True, slots=True)
class Row:
    """One record of an import file: the line it starts on and its values by column."""

    line: int
    values: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class RowError:
    """Why one row was not imported: its line, the column at fault ('' for the row), why."""

    line: int
    column: str
    reason: str


def format_of(name: str) -> FileFormat:
    """The format a file name announces: ``.csv`` or ``.jsonl`` / ``.ndjson``.

    Raises:
        FileUnreadable: any other suffix.
    """
    lowered = name.lower()
    if lowered.endswith(".csv"):
        return "csv"
    if lowered.endswith((".jsonl", ".ndjson")):
        return "jsonl"
    raise FileUnreadable(f"{name}: expected a .csv or .jsonl file")


def json_object(text: str) -> Any:
    """One JSON document with numbers as Decimal/int (never float)."""
    return json.loads(text, parse_float=Decimal)


def read_jsonl(text: str) -> tuple[list[Row], list[RowError]]:
    """Each non-blank line of JSON Lines text as a row; lines that are not objects as errors."""
    rows: list[Row] = []
    errors: list[RowError] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json_object(line)
        except (json.JSONDecodeError, RecursionError) as exc:
            errors.append(RowError(number, "", f"not JSON: {exc}"))
            continue
        if not isinstance(value, dict):
            errors.append(RowError(number, "", "not a JSON object"))
            continue
        rows.append(Row(number, {k: v for k, v in value.items() if v is not None}))
    return rows, errors


def read_csv(text: str) -> tuple[list[Row], list[RowError]]:
    """Each data row of CSV text (first line: the header) as a row.

    Raises:
        FileUnreadable: no header line, or a header with an empty or repeated name.
    """
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline=""))
    try:
        header = [name.strip() for name in next(reader)]
    except StopIteration:
        raise FileUnreadable("the file is empty: expected a header line") from None
    except csv.Error as exc:
        raise FileUnreadable(f"line 1: {exc}") from exc
    if "" in header or len(set(header)) != len(header):
        raise FileUnreadable(f"line 1: column names must be distinct and non-empty: {header}")
    rows: list[Row] = []
    errors: list[RowError] = []
    start = reader.line_num + 1
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            errors.append(RowError(start, "", f"not CSV: {exc}"))
            start = reader.line_num + 1
            continue
        line, start = start, reader.line_num + 1
        if not any(cell.strip() for cell in cells):
            continue
        if len(cells) != len(header):
            errors.append(RowError(line, "", f"{len(cells)} values for {len(header)} columns"))
            continue
        values = {
            name: cell.strip() for name, cell in zip(header, cells, strict=True) if cell.strip()
        }
        rows.append(Row(line, values))
    return rows, errors


def read_rows(text: str, file_format: FileFormat) -> tuple[list[Row], list[RowError]]:
    """The rows of ``text`` in ``file_format``, with the lines that are not rows as errors."""
    if file_format == "csv":
        return read_csv(text)
    return read_jsonl(text)
