"""Transaction files for lifetime value, read strictly (``forewarn clv fit``).

Layouts:

- the CDNOW text files, whitespace separated, no header: the master file's
  ``customer_id yyyymmdd n_cds dollars`` (23,570 customers) and the 1/10th sample's
  ``master_id sample_id yyyymmdd n_cds dollars``, told apart by their number of fields;
- any CSV (``,`` ``;`` tab or ``|``) or Parquet file with an id, a date and an amount column,
  named by ``--id-column/--date-column/--amount-column`` (default ``customer_id``, ``date``,
  ``amount``). Dates are ISO 8601 (with or without a time; a time zone is converted to UTC)
  or ``--date-format``; one format per file.

The same columns can come from a mapping file (``--map``, YAML; the options win)::

    id: client_no
    date: order_date
    amount: net_eur
    date_format: "%d.%m.%Y"

Every refusal is a :class:`TransactionsError` naming the file, the line (the header, if any,
is line 1) and the column. The amount policy (zero and negative amounts) is applied in
:func:`models.clv.summarize`.

Examples
--------
>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "CDNOW_master.txt"
>>> _ = path.write_text(" 00001 19970101  1   11.77\\n 00002 19970112  1   12.00\\n")
>>> first = read_transactions(path).iloc[0]
>>> first["customer_id"], str(first["date"].date()), float(first["amount"])
('00001', '1997-01-01', 11.77)
>>> _ = path.write_text(" 00001 19970101  1   11.77\\n 00002 1997011  1   12.00\\n")
>>> read_transactions(path)
Traceback (most recent call last):
...
models.clv_io.TransactionsError: ...CDNOW_master.txt line 2, column 'date': '1997011' is not...
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from models.tables import TableError, TableMapping, read_cells

CDNOW_LAYOUTS = {
    4: ["customer_id", "date", "n_cds", "amount"],  # CDNOW_master.txt
    5: ["master_id", "customer_id", "date", "n_cds", "amount"],  # CDNOW_sample.txt
}


class TransactionsError(ValueError):
    """A transaction file that cannot be used; the message names file, line and column."""


def _bad(path: Path, frame: pd.DataFrame, mask: pd.Series, column: str, what: str) -> None:
    lines = [int(i) for i in frame.index[mask]]
    shown = ", ".join(map(str, lines[:3])) + (
        f" ({len(lines)} lines in all)" if len(lines) > 3 else ""
    )
    value = frame.loc[mask, column].iloc[0]
    found = "an empty cell" if pd.isna(value) else repr(value)
    raise TransactionsError(
        f"{path} line{'s' if len(lines) > 1 else ''} {shown}, column {column!r}: {found} is not "
        f"{what}"
    )


def _read_cdnow(path: Path) -> pd.DataFrame:
    rows, width = [], None
    with path.open(encoding="ascii", errors="replace") as fh:
        for n, line in enumerate(fh, start=1):
            fields = line.split()
            if not fields:
                continue
            if width is None:
                width = len(fields)
                if width not in CDNOW_LAYOUTS:
                    raise TransactionsError(
                        f"{path} line {n}: {width} whitespace-separated fields; the CDNOW "
                        "layouts have 4 (master: id yyyymmdd n_cds dollars) or 5 (sample: "
                        "master_id sample_id yyyymmdd n_cds dollars). For another layout use a "
                        "CSV with --id-column/--date-column/--amount-column"
                    )
            elif len(fields) != width:
                raise TransactionsError(
                    f"{path} line {n}: {len(fields)} fields where line 1 has {width}"
                )
            rows.append((n, fields))
    if not rows:
        raise TransactionsError(f"{path}: no transactions")
    frame = pd.DataFrame(
        [f for _, f in rows], index=[n for n, _ in rows], columns=CDNOW_LAYOUTS[width]
    )
    return _typed(path, frame, "customer_id", "date", "amount", "%Y%m%d")


def _typed(
    path: Path,
    frame: pd.DataFrame,
    id_column: str,
    date_column: str,
    amount_column: str,
    date_format: str | None,
) -> pd.DataFrame:
    ids = frame[id_column]
    if ids.isna().any():
        _bad(path, frame, ids.isna(), id_column, "a customer id")
    raw_dates = frame[date_column]
    if date_format:
        dates = pd.to_datetime(raw_dates, format=date_format, errors="coerce")
        if date_format == "%Y%m%d":  # strptime takes '1997011' for 1997-01-01: not here
            dates = dates.where(raw_dates.str.fullmatch(r"\d{8}").fillna(False))
        what = f"a date ({'yyyymmdd' if date_format == '%Y%m%d' else date_format})"
    else:
        dates = pd.to_datetime(raw_dates, format="ISO8601", errors="coerce", utc=True)
        what = "an ISO 8601 date (YYYY-MM-DD); give --date-format for another format"
        if dates.notna().all():
            dates = dates.dt.tz_localize(None)
    if dates.isna().any():
        _bad(path, frame, dates.isna(), date_column, what)
    amounts = pd.to_numeric(frame[amount_column], errors="coerce")
    if amounts.isna().any():
        _bad(path, frame, amounts.isna(), amount_column, "an amount (a number, '.' for decimals)")
    return pd.DataFrame(
        {"customer_id": ids.astype(str), "date": dates, "amount": amounts.astype(float)},
        index=frame.index,
    )


MAPPING_KEYS = {
    "id": "id_column",
    "date": "date_column",
    "amount": "amount_column",
    "date_format": "date_format",
}


def read_mapping(path: Path) -> dict[str, str]:
    """A transactions mapping file as :func:`read_transactions` keyword arguments."""
    import yaml

    try:
        raw = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise TransactionsError(f"{path}: not a readable YAML mapping: {exc}") from None
    if not isinstance(raw, dict) or set(raw) - set(MAPPING_KEYS):
        raise TransactionsError(
            f"{path}: a transactions mapping has the keys {sorted(MAPPING_KEYS)}; found "
            f"{sorted(raw) if isinstance(raw, dict) else type(raw).__name__}"
        )
    return {MAPPING_KEYS[k]: str(v) for k, v in raw.items()}


def read_transactions(
    path: Path,
    *,
    id_column: str = "customer_id",
    date_column: str = "date",
    amount_column: str = "amount",
    date_format: str | None = None,
) -> pd.DataFrame:
    """Columns ``customer_id`` (str), ``date`` (naive UTC), ``amount`` (float), indexed by
    the file's line number; raise :class:`TransactionsError` on anything unusable."""
    path = Path(path)
    if not path.is_file():
        raise TransactionsError(f"{path}: no such file")
    if path.suffix.lower() not in (".csv", ".tsv", ".parquet", ".pq"):
        return _read_cdnow(path)
    try:
        frame = read_cells(path, TableMapping(), [])
    except TableError as exc:
        raise TransactionsError(str(exc)) from None
    for column, flag in (
        (id_column, "--id-column"),
        (date_column, "--date-column"),
        (amount_column, "--amount-column"),
    ):
        if column not in frame.columns:
            raise TransactionsError(
                f"{path} line 1: no column {column!r} (columns: {', '.join(frame.columns)}); "
                f"name it with {flag}"
            )
    return _typed(path, frame, id_column, date_column, amount_column, date_format)
