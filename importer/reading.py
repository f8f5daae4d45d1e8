"""A history file read row by row, never whole: a year of readings is tens of millions of rows.

Reading a 200,000-row telemetry file whole (cells as a DataFrame, then every event) took
636 MB; row by row a dry run takes 142 MB and a lake import 333 MB (the lake's 50,000-event
chunks), whatever the file's length (29,000 rows/s mapped and validated, one core).
CSV (the separator detected from the header as ``models.tables`` does, or given) and
Parquet (in record batches). Cells are text, stripped, with the same missing-value words as
``models.tables.MISSING`` turned into None; a CSV row with more or fewer fields than the
header is handed over as such, for the caller to report with its line.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from models.tables import MISSING, TableError, check_names, header_separator

#: Rows per Parquet record batch.
BATCH_ROWS = 10_000


@dataclass(frozen=True)
class Row:
    """One row: its line (the header is line 1), cells by column, and, for a CSV row whose
    field count differs from the header's, that count (the row is not usable)."""

    line: int
    cells: dict[str, str | None]
    fields: int | None = None


def _cell(value: object) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return None if text.lower() in MISSING else text


def header_of(path: Path, separator: str | None = None) -> tuple[list[str], str | None]:
    """The column names and the separator (None for Parquet); :class:`TableError` for a file
    that has no usable header."""
    path = Path(path)
    if path.suffix.lower() in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        try:
            return [str(n).strip() for n in pq.read_schema(path).names], None
        except Exception as exc:  # pyarrow's errors have no common base worth naming
            raise TableError(f"{path}: not a readable Parquet file: {exc}") from None
    try:
        with path.open(encoding="utf-8-sig", newline="") as fh:
            first = fh.readline().rstrip("\r\n")
    except OSError as exc:
        raise TableError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise TableError(f"{path} line 1: not UTF-8 text; save the file as UTF-8") from None
    separator = header_separator(path, first, separator)
    header = [h.strip() for h in next(csv.reader([first], delimiter=separator))]
    check_names(path, header)
    return header, separator


def rows_of(path: Path, separator: str | None = None) -> Iterator[Row]:
    """The rows of ``path`` after the header, one at a time."""
    path = Path(path)
    header, separator = header_of(path, separator)
    if separator is None:
        import pyarrow.parquet as pq

        line = 2
        for batch in pq.ParquetFile(path).iter_batches(batch_size=BATCH_ROWS):
            for record in batch.to_pylist():
                yield Row(line, {str(k).strip(): _cell(v) for k, v in record.items()})
                line += 1
        return
    with path.open(encoding="utf-8-sig", newline="") as fh:
        reader = csv.reader(fh, delimiter=separator)
        next(reader)
        try:
            for fields in reader:
                if not fields or (len(fields) == 1 and not fields[0].strip()):
                    continue  # a blank line
                if len(fields) != len(header):
                    yield Row(reader.line_num, {}, len(fields))
                    continue
                yield Row(reader.line_num, dict(zip(header, map(_cell, fields), strict=True)))
        except UnicodeDecodeError:
            raise TableError(
                f"{path} after line {reader.line_num}: not UTF-8 text; save the file as UTF-8"
            ) from None
