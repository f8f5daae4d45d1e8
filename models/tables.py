"""A user's labelled snapshot table, read strictly: one row per customer, a 0/1 label.

:func:`read_table` reads a CSV (or Parquet) file into typed columns for
``forewarn churn fit --table``. Every refusal is a :class:`TableError` whose message names the
file, the line (the header is line 1) and the column, and says what to do; nothing is
guessed silently. What is handled rather than refused is listed in ``notes`` with counts:

- separator: ``,`` ``;`` tab or ``|``, whichever splits the header into most columns
  (or ``separator`` in the mapping); spaces around names and values are stripped;
- missing values: empty cells and ``NA``, ``N/A``, ``NaN``, ``null``, ``None``, ``?``;
- column types (``numeric``, ``categorical``, ``date``, ``ignore``) come from the mapping,
  otherwise from the values: numeric if every value is a number, date if every value is a
  date in one format, else categorical;
- dropped without a mapping entry: a column equal to the row number, a text column whose
  more than 20 values averaging fewer than 5 rows each (names, e-mails, free text), a
  constant column;
- dates become "days before ``as_of``" (the mapping's, else the latest date in the table);
  ``dd/mm/yyyy`` versus ``mm/dd/yyyy`` is decided by a day above 12, or by ``date_format``;
- unknown categories at scoring time and rare ones (fewer than 10 rows) share one level
  (``models.learner``).

The mapping file (YAML), every key optional::

    id: CustomerId            # or --id
    label: Exited             # or --label; values 0/1 (or true/false)
    separator: ","
    date_format: "%d/%m/%Y"   # strftime format of every date column
    as_of: 2024-06-30         # dates become days before this day
    columns:                  # anything not listed is inferred (infer: false to forbid)
      Geography: categorical
      NumOfProducts: numeric
      Surname: ignore
    infer: true

Examples
--------
>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "customers.csv"
>>> _ = path.write_text("id;plan;months;churned\\n1;basic;3;0\\n2;pro;14;1\\n3;basic;;0\\n")
>>> table = read_table(path, id_column="id", label_column="churned")
>>> table.numeric, table.categorical, table.y.tolist()
(['months'], ['plan'], [0, 1, 0])
>>> table.notes[0]
"separator ';' (the header splits into 4 columns with it)"
>>> _ = path.write_text("id,plan,churned\\n1,basic,0\\n2,pro,yes\\n")
>>> read_table(path, id_column="id", label_column="churned")
Traceback (most recent call last):
...
models.tables.TableError: ...customers.csv line 3, column 'churned': the label must be 0 or 1, ...
"""

from __future__ import annotations

import csv
import difflib
import io
import re
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

TYPES = ("numeric", "categorical", "date", "ignore")
MISSING = frozenset({"", "na", "n/a", "nan", "null", "none", "?"})
SEPARATORS = (",", ";", "\t", "|")
LABEL_VALUES = {"0": 0, "1": 1, "0.0": 0, "1.0": 1, "false": 0, "true": 1}
#: A text column whose values average fewer rows than this each identifies rows (a name, an
#: e-mail, a zip code, free text) more than it groups them: half the rows a category needs
#: to be learned at all (``models.learner.MIN_CATEGORY_ROWS``).
IDENTIFIER_ROWS = 5
#: Lines quoted in an error message at most (the count of all is given too).
SHOWN = 3
DATE_PATTERNS = {
    "%Y-%m-%d": re.compile(r"^\d{4}-\d{1,2}-\d{1,2}([ T]\d{1,2}:\d{2}(:\d{2})?)?$"),
    "slash": re.compile(r"^\d{1,2}/\d{1,2}/\d{4}$"),
    "%d.%m.%Y": re.compile(r"^\d{1,2}\.\d{1,2}\.\d{4}$"),
}


class TableError(ValueError):
    """Input that cannot be used; the message names the file, line and column and the fix."""


@dataclass(frozen=True)
class TableMapping:
    """Which column is what (see the module docstring for the YAML form)."""

    id: str | None = None
    label: str | None = None
    separator: str | None = None
    date_format: str | None = None
    as_of: date | None = None
    columns: dict[str, str] = field(default_factory=dict)
    infer: bool = True

    @classmethod
    def from_yaml(cls, path: Path) -> TableMapping:
        import yaml

        try:
            raw = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise TableError(f"{path}: not a readable YAML mapping: {exc}") from None
        if not isinstance(raw, dict):
            raise TableError(f"{path}: a mapping file is a YAML dictionary (id, label, columns)")
        unknown = set(raw) - {
            "id",
            "label",
            "separator",
            "date_format",
            "as_of",
            "columns",
            "infer",
        }
        if unknown:
            raise TableError(
                f"{path}: unknown keys {sorted(unknown)}; allowed: id, label, separator, "
                "date_format, as_of, columns, infer"
            )
        columns = raw.get("columns") or {}
        if not isinstance(columns, dict):
            raise TableError(f"{path}: 'columns' maps column names to one of {TYPES}")
        for name, kind in columns.items():
            if kind not in TYPES:
                raise TableError(
                    f"{path}: column {name!r} has type {kind!r}; expected one of {TYPES}"
                )
        as_of = raw.get("as_of")
        if as_of is not None and not isinstance(as_of, date):
            try:
                as_of = date.fromisoformat(str(as_of))
            except ValueError:
                raise TableError(f"{path}: as_of {as_of!r} is not a date (YYYY-MM-DD)") from None
        separator = raw.get("separator")
        if separator is not None and (not isinstance(separator, str) or len(separator) != 1):
            raise TableError(f"{path}: separator must be one character, got {separator!r}")
        return cls(
            id=raw.get("id"),
            label=raw.get("label"),
            separator=separator,
            date_format=raw.get("date_format"),
            as_of=as_of if isinstance(as_of, date) else None,
            columns={str(k): v for k, v in columns.items()},
            infer=bool(raw.get("infer", True)),
        )


@dataclass
class LabelledTable:
    """A validated table: features ``X`` (numeric columns as float, categorical as str with
    None for missing), label ``y``, the ids, and what was handled on the way."""

    path: Path
    ids: pd.Series
    X: pd.DataFrame
    y: np.ndarray
    numeric: list[str]
    categorical: list[str]
    dates: list[str]
    notes: list[str]

    @property
    def columns(self) -> list[str]:
        return [*self.numeric, *self.categorical]

    def signature(self) -> dict[str, str]:
        """Feature names and types, in model order."""
        return {
            **{
                c: ("date (days before as_of)" if c in self.dates else "numeric")
                for c in self.numeric
            },
            **dict.fromkeys(self.categorical, "categorical"),
        }


def _lines(frame_index: pd.Index) -> list[int]:
    return [int(i) for i in frame_index]


def _where(path: Path, lines: list[int], column: str) -> str:
    shown = ", ".join(str(n) for n in lines[:SHOWN])
    more = f" ({len(lines)} lines in all)" if len(lines) > SHOWN else ""
    return f"{path} line{'s' if len(lines) > 1 else ''} {shown}{more}, column {column!r}"


def header_separator(path: Path, first: str, separator: str | None) -> str:
    """The separator of a CSV whose first line is ``first``: ``separator`` if given, else the
    one of :data:`SEPARATORS` that splits it into most columns; :class:`TableError` for an
    empty first line or a single column."""
    if not first.strip():
        raise TableError(f"{path} line 1: empty; the first line must be the header")
    if separator is not None:
        return separator
    counts = {s: len(next(csv.reader([first], delimiter=s))) for s in SEPARATORS}
    separator = max(SEPARATORS, key=lambda s: counts[s])
    if counts[separator] < 2:
        raise TableError(
            f"{path} line 1: the header is a single column {first[:80]!r}; separate "
            "columns with ',', ';', tab or '|' (or set separator in the mapping)"
        )
    return separator


def check_names(path: Path, header: list[str]) -> None:
    """Every column named, no name twice (:class:`TableError` naming the column)."""
    empty = [i + 1 for i, h in enumerate(header) if not h]
    if empty:
        raise TableError(f"{path} line 1: column {empty[0]} has no name; every column needs one")
    duplicated = sorted({h for h in header if header.count(h) > 1})
    if duplicated:
        raise TableError(f"{path} line 1: column names {duplicated} appear more than once")


def _read_text_rows(path: Path, separator: str | None) -> tuple[list[str], list[list[str]], str]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise TableError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise TableError(
            f"{path} line {line}: not UTF-8 text (byte {raw[exc.start]:#x}); save the file as "
            "UTF-8 (or CSV UTF-8 in a spreadsheet)"
        ) from None
    separator = header_separator(path, text.split("\n", 1)[0].rstrip("\r"), separator)
    # A file object, not lines: a quoted field may hold a line break (line_num counts both).
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=separator)
    header = [h.strip() for h in next(reader)]
    rows = []
    for row in reader:
        if not row or (len(row) == 1 and not row[0].strip()):
            continue  # blank line
        if len(row) != len(header):
            raise TableError(
                f"{path} line {reader.line_num}: {len(row)} fields, the header has "
                f"{len(header)} (separator {separator!r}); a stray separator or quote, or a "
                "truncated line"
            )
        rows.append((reader.line_num, row))
    return header, rows, separator  # type: ignore[return-value]


def read_cells(path: Path, mapping: TableMapping, notes: list[str]) -> pd.DataFrame:
    """The file as strings (None for missing), indexed by line number."""
    if path.suffix.lower() in (".parquet", ".pq"):
        try:
            frame = pd.read_parquet(path)
        except Exception as exc:  # pyarrow's errors have no common base worth naming
            raise TableError(f"{path}: not a readable Parquet file: {exc}") from None
        frame.columns = [str(c).strip() for c in frame.columns]
        frame.index = pd.RangeIndex(2, len(frame) + 2)  # "line" = row + 1, as in a CSV
        strings = frame.astype(object).where(frame.notna(), None)
        return strings.map(lambda v: None if v is None else str(v).strip())
    header, rows, separator = _read_text_rows(path, mapping.separator)
    if mapping.separator is None and separator != ",":
        notes.append(
            f"separator {separator!r} (the header splits into {len(header)} columns with it)"
        )
    check_names(path, header)
    if not rows:
        raise TableError(f"{path}: a header and no rows")
    values = [[v.strip() for v in row] for _, row in rows]
    frame = pd.DataFrame(values, columns=header, index=[n for n, _ in rows], dtype=object)
    return frame.map(lambda v: None if v.lower() in MISSING else v)


def _require(path: Path, frame: pd.DataFrame, column: str, role: str, flag: str) -> None:
    if column in frame.columns:
        return
    found = list(frame.columns)
    hint = difflib.get_close_matches(column, found, n=1)
    # Column names are rarely numbers: a header half made of numbers is a first data row.
    looks_like_data = sum(bool(re.fullmatch(r"-?[\d.,/:-]+", c)) for c in found) * 2 >= len(found)
    raise TableError(
        f"{path} line 1: no {role} column {column!r} in the header (columns: "
        f"{', '.join(found[:20])}{' ...' if len(found) > 20 else ''})"
        + (f"; did you mean {hint[0]!r}?" if hint else "")
        + ("; line 1 looks like data: the file needs a header line" if looks_like_data else "")
        + f" ({flag} or the mapping's {role!r})"
    )


def _label(path: Path, column: pd.Series) -> np.ndarray:
    name = str(column.name)
    values = column.map(lambda v: None if pd.isna(v) else LABEL_VALUES.get(str(v).lower()))
    bad = values.isna()
    if bad.any():
        first = column[bad].iloc[0]
        found = "an empty cell" if pd.isna(first) else repr(first)
        others = column[bad].dropna().unique()[:5]
        raise TableError(
            f"{_where(path, _lines(column.index[bad]), name)}: the label must be 0 or 1, found "
            f"{found}"
            + (f" (values: {', '.join(map(repr, others))})" if len(others) else "")
            + "; map the label to 0/1 (1 = churned) or drop those rows"
        )
    y = values.to_numpy(dtype=int)
    if y.min() == y.max():
        raise TableError(
            f"{path}, column {name!r}: every row has label {y[0]}; churn needs both 0 and 1"
        )
    return y


def _ids(path: Path, column: pd.Series) -> pd.Series:
    name = str(column.name)
    missing = column.isna()
    if missing.any():
        raise TableError(f"{_where(path, _lines(column.index[missing]), name)}: empty id")
    duplicated = column.duplicated(keep=False)
    if duplicated.any():
        first = column[duplicated].iloc[0]
        lines = _lines(column.index[column == first])
        raise TableError(
            f"{_where(path, lines, name)}: id {first!r} appears more than once "
            f"({int(column.duplicated().sum())} repeated ids); one row per customer"
        )
    return column


def _numbers(column: pd.Series) -> pd.Series:
    return pd.to_numeric(column, errors="coerce")


def date_format_of(path: Path, column: pd.Series, declared: str | None) -> str:
    """The one date format of ``column``, or an error naming the lines in another one."""
    name = str(column.name)
    values = column.dropna()
    if declared:
        parsed = pd.to_datetime(values, format=declared, errors="coerce")
        bad = parsed.isna()
        if bad.any():
            raise TableError(
                f"{_where(path, _lines(values.index[bad]), name)}: {values[bad].iloc[0]!r} is "
                f"not a date in the mapping's date_format {declared!r}"
            )
        return declared
    kinds = pd.Series(
        [next((k for k, rx in DATE_PATTERNS.items() if rx.match(v)), None) for v in values],
        index=values.index,
    )
    counts = kinds.value_counts()
    if len(counts) > 1:
        main, other = counts.index[0], counts.index[1]
        lines = _lines(kinds.index[kinds == other])
        raise TableError(
            f"{_where(path, lines, name)}: dates in mixed formats ({counts[main]} rows like "
            f"{values[kinds == main].iloc[0]!r}, {counts[other]} like "
            f"{values[kinds == other].iloc[0]!r}); write them in one format or give "
            "date_format in the mapping"
        )
    kind = counts.index[0]
    if kind != "slash":
        return kind
    parts = values.str.split("/", expand=True).astype(int)
    day_first, month_first = (parts[0] > 12).any(), (parts[1] > 12).any()
    if day_first and month_first:
        lines = _lines(values.index[parts[1] > 12])
        raise TableError(
            f"{_where(path, lines, name)}: dates are day-first on some lines and month-first on "
            "these; write them in one format"
        )
    if not (day_first or month_first):
        raise TableError(
            f"{path}, column {name!r}: dd/mm/yyyy or mm/dd/yyyy cannot be told apart (no day "
            "above 12); give date_format in the mapping, e.g. '%d/%m/%Y'"
        )
    return "%d/%m/%Y" if day_first else "%m/%d/%Y"


def infer_type(column: pd.Series) -> str:
    values = column.dropna()
    if values.empty:
        return "ignore"
    if _numbers(values).notna().all():
        return "numeric"
    matched = values.map(lambda v: any(rx.match(v) for rx in DATE_PATTERNS.values()))
    if matched.all():
        return "date"
    return "categorical"


def read_table(
    path: Path,
    *,
    id_column: str | None = None,
    label_column: str | None = None,
    mapping: TableMapping | None = None,
) -> LabelledTable:
    """Read and validate a labelled table; raise :class:`TableError` on anything unusable."""
    path = Path(path)
    mapping = mapping or TableMapping()
    id_column = id_column or mapping.id
    label_column = label_column or mapping.label
    if not id_column or not label_column:
        raise TableError("name the id and label columns: --id COL --label COL (or the mapping)")
    notes: list[str] = []
    frame = read_cells(path, mapping, notes)
    _require(path, frame, id_column, "id", "--id")
    _require(path, frame, label_column, "label", "--label")
    unknown = sorted(set(mapping.columns) - set(frame.columns))
    if unknown:
        raise TableError(
            f"{path} line 1: the mapping names columns {unknown} that are not in the header"
        )
    ids = _ids(path, frame[id_column])
    y = _label(path, frame[label_column])
    numeric: list[str] = []
    categorical: list[str] = []
    dates: list[str] = []
    features: dict[str, pd.Series] = {}
    stamps: dict[str, pd.Series] = {}
    positions = np.arange(1, len(frame) + 1)
    for name in frame.columns:
        if name in (id_column, label_column):
            continue
        column = frame[name]
        declared = mapping.columns.get(name)
        if declared is None and not mapping.infer:
            notes.append(f"column {name!r} ignored: not in the mapping and infer is false")
            continue
        kind = declared or infer_type(column)
        if kind == "ignore":
            if declared is None:
                notes.append(f"column {name!r} dropped: every value is missing")
            continue
        if kind == "numeric":
            parsed = _numbers(column)
            bad = parsed.isna() & column.notna()
            if bad.any():
                raise TableError(
                    f"{_where(path, _lines(column.index[bad]), name)}: {column[bad].iloc[0]!r} "
                    "is not a number; fix the value, or declare the column categorical in the "
                    "mapping"
                )
            if declared is None:
                offsets = parsed.to_numpy() - positions
                if parsed.notna().all() and np.all(offsets == offsets[0]):
                    notes.append(f"column {name!r} dropped: it is the row number")
                    continue
                if parsed.nunique() < 2:
                    notes.append(f"column {name!r} dropped: a single value")
                    continue
            features[name] = parsed.astype(float)
            numeric.append(name)
        elif kind == "date":
            fmt = date_format_of(path, column, mapping.date_format)
            stamps[name] = pd.to_datetime(column, format=fmt if fmt != "%Y-%m-%d" else "ISO8601")
            dates.append(name)
        else:
            values = column.dropna()
            distinct = values.nunique()
            if declared is None and distinct > max(20, len(values) / IDENTIFIER_ROWS):
                notes.append(
                    f"column {name!r} dropped: {distinct} distinct values in {len(values)} rows "
                    "(an identifier or free text; declare it categorical in the mapping to keep it)"
                )
                continue
            if declared is None and distinct < 2:
                notes.append(f"column {name!r} dropped: a single value")
                continue
            features[name] = column.astype(object)
            categorical.append(name)
    if dates:
        latest = max(s.max() for s in stamps.values())
        as_of = pd.Timestamp(mapping.as_of) if mapping.as_of else latest
        if mapping.as_of is None:
            notes.append(f"dates become days before {as_of.date()} (the latest date; set as_of)")
        for name in dates:
            features[name] = (as_of - stamps[name]).dt.days.astype(float)
        numeric += dates
    if not features:
        raise TableError(f"{path}: no feature columns left beside the id and the label")
    X = pd.DataFrame({c: features[c] for c in [*numeric, *categorical]}, index=frame.index)
    for name in numeric:
        missing = int(X[name].isna().sum())
        if missing:
            notes.append(f"column {name!r}: {missing} missing values (kept as missing)")
    return LabelledTable(path, ids, X, y, numeric, categorical, dates, notes)


def describe(table: LabelledTable) -> dict[str, Any]:
    """Rows, churners and columns by type, for reports."""
    return {
        "file": str(table.path),
        "rows": len(table.y),
        "churners": int(table.y.sum()),
        "churn_rate": round(float(table.y.mean()), 4),
        "numeric": table.numeric,
        "categorical": table.categorical,
        "dates": table.dates,
        "notes": table.notes,
        "read_at": datetime.now().astimezone().isoformat(timespec="seconds"),
    }
