"""A CRM export as customer records (:class:`forewarn.events.CustomerAttributes`).

The mapping (YAML, every key but ``id`` optional; docs/import.md)::

    id: CustomerId
    separator: ","
    date_format: "%d/%m/%Y"        # of every date column (otherwise detected, as for churn tables)
    valid_from: {column: Updated}  # when each record became true; or a date; default: now
    timezone: Europe/Berlin        # of times written without a zone
    contact:                       # outreach fields: a column or a source (importer.mapping)
      name: Surname
      phone: Phone
      territory: Geography
      preferred_channel: {column: Channel, codes: {Tel: phone, Mail: email}}
    columns:                       # attributes: numeric | categorical | date | ignore
      NumOfProducts: categorical
      Surname: ignore
    infer: true                    # other columns typed from their values (false: listed only)

Attributes are typed as ``forewarn churn fit --table`` types them (``models.tables``): numeric
if every value is a number, date if every value is a date in one format, else categorical; an
inferred text column with more distinct values than a category can hold (names, e-mails) is
not an attribute (a note says so; list it to keep it). Column names become attribute names
with anything but letters, digits, ``_ . : -`` replaced by ``_``.

Point in time: a record is valid from ``valid_from``. The default, the time of the import, is
the honest one for a snapshot: the nightly then never shows a past cut-off attributes it
could not have known. A backfill gives each row's own time (a "last changed" column).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pandas as pd

from forewarn.events import CustomerAttributes
from importer.events import RowError, convert, derived_id, validated
from importer.mapping import (
    Mapped,
    MappingError,
    Rejected,
    Source,
    check_separator,
    check_timezone,
    load_yaml,
    parse_source,
)
from models.tables import (
    IDENTIFIER_ROWS,
    TYPES,
    TableMapping,
    date_format_of,
    infer_type,
    read_cells,
)

CONTACT = CustomerAttributes.contact_fields
KEYS = ("id", "separator", "date_format", "valid_from", "timezone", "contact", "columns", "infer")


@dataclass(frozen=True)
class CustomerMapping:
    id: str
    separator: str | None = None
    date_format: str | None = None
    valid_from: Source | None = None
    timezone: str = "UTC"
    contact: dict[str, Source] = field(default_factory=dict)
    columns: dict[str, str] = field(default_factory=dict)
    infer: bool = True

    @classmethod
    def from_yaml(cls, path: Path) -> CustomerMapping:
        raw = load_yaml(path)
        unknown = sorted(set(raw) - set(KEYS))
        if unknown:
            raise MappingError(f"{path}: unknown keys {unknown}; allowed: {', '.join(KEYS)}")
        if not isinstance(raw.get("id"), str):
            raise MappingError(f"{path}: 'id' names the customer id column (id: CustomerId)")
        contact_raw = raw.get("contact") or {}
        if not isinstance(contact_raw, dict):
            raise MappingError(f"{path}: 'contact' maps {', '.join(CONTACT)} to your columns")
        contact = {}
        for name, source in contact_raw.items():
            if name not in CONTACT:
                raise MappingError(
                    f"{path}: contact.{name} is not a contact field; they are {', '.join(CONTACT)}"
                )
            contact[name] = parse_source(path, f"contact.{name}", source)
        columns = raw.get("columns") or {}
        if not isinstance(columns, dict) or any(t not in TYPES for t in columns.values()):
            raise MappingError(f"{path}: 'columns' maps column names to one of {TYPES}")
        valid_from = raw.get("valid_from")
        source = None
        if valid_from is not None:
            source = (
                parse_source(path, "valid_from", valid_from)
                if isinstance(valid_from, dict)
                else Source(value=str(valid_from))
            )
        return cls(
            id=raw["id"],
            separator=check_separator(path, raw.get("separator")),
            date_format=raw.get("date_format"),
            valid_from=source,
            timezone=check_timezone(path, "timezone", raw.get("timezone", "UTC")),
            contact=contact,
            columns={str(k): str(v) for k, v in columns.items()},
            infer=bool(raw.get("infer", True)),
        )


def attribute_name(column: str) -> str:
    """A column name as an attribute name (the contract's id characters).

    >>> attribute_name("Monthly charge (EUR)")
    'Monthly_charge__EUR_'
    """
    return re.sub(r"[^A-Za-z0-9_.:\-]", "_", column.strip())[:64] or "_"


def _attribute_columns(
    path: Path, cells: pd.DataFrame, mapping: CustomerMapping, notes: list[str]
) -> dict[str, tuple[str, str | None]]:
    """Attribute columns -> (type, date format)."""
    used = {mapping.id, *(s.column for s in mapping.contact.values() if s.column)}
    if mapping.valid_from is not None and mapping.valid_from.column:
        used.add(mapping.valid_from.column)
    out: dict[str, tuple[str, str | None]] = {}
    for name in cells.columns:
        declared = mapping.columns.get(name)
        if declared is None and (name in used or not mapping.infer):
            continue
        column = cells[name]
        kind = declared or infer_type(column)
        if kind == "ignore":
            continue
        if kind == "categorical" and declared is None:
            values = column.dropna()
            if values.nunique() > max(20, len(values) / IDENTIFIER_ROWS):
                notes.append(
                    f"column {name!r} not imported as an attribute: {values.nunique()} distinct "
                    f"values in {len(values)} rows (an identifier or free text; list it under "
                    "columns to keep it)"
                )
                continue
        fmt = date_format_of(path, column, mapping.date_format) if kind == "date" else None
        out[name] = (kind, fmt)
    return out


def map_customers(path: Path, mapping: CustomerMapping, now: datetime | None = None) -> Mapped:
    """Every row of ``path`` as a customer record; rows that do not map are reported."""
    path = Path(path)
    now = (now or datetime.now(UTC)).replace(microsecond=0)
    out = Mapped()
    cells = read_cells(path, TableMapping(separator=mapping.separator), out.notes)
    needed = [mapping.id, *(s.column for s in mapping.contact.values() if s.column)]
    if mapping.valid_from is not None and mapping.valid_from.column:
        needed.append(mapping.valid_from.column)
    needed += [c for c in mapping.columns if mapping.columns[c] != "ignore"]
    missing = [c for c in dict.fromkeys(needed) if c not in cells.columns]
    if missing:
        close = difflib.get_close_matches(missing[0], [str(c) for c in cells.columns], n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise MappingError(
            f"{path} line 1: the mapping reads columns {missing} that are not in the "
            f"header{hint}; columns: {', '.join(map(str, cells.columns))}"
        )
    attributes = _attribute_columns(path, cells, mapping, out.notes)
    renamed = {c: attribute_name(c) for c in attributes if attribute_name(c) != c}
    if renamed:
        out.notes.append(f"attribute names: {renamed}")
    seen: dict[tuple[str, datetime], int] = {}
    for line, row in zip(cells.index, cells.to_dict("records"), strict=True):
        try:
            record = _record(row, mapping, attributes, now)
        except RowError as exc:
            out.rejected.append(Rejected(int(line), exc.column, str(exc)))
            continue
        key = (record.customer_id, record.event_time)
        if key in seen:
            out.rejected.append(
                Rejected(
                    int(line),
                    mapping.id,
                    f"customer {record.customer_id!r} again (first on line {seen[key]}); one "
                    "row per customer and valid_from",
                )
            )
            continue
        seen[key] = int(line)
        out.events.append(record)
    return out


def _record(
    row: dict[str, Any],
    mapping: CustomerMapping,
    attributes: dict[str, tuple[str, str | None]],
    now: datetime,
) -> CustomerAttributes:
    customer_id = row.get(mapping.id)
    if customer_id is None or pd.isna(customer_id):
        raise RowError(mapping.id, "no customer id")
    values: dict[str, Any] = {"customer_id": customer_id}
    for name, source in mapping.contact.items():
        value = convert(row.get(source.column), source, "text", mapping.timezone, name)
        if value is not None:
            values[name] = value
    when = now
    if mapping.valid_from is not None:
        column = mapping.valid_from.column
        when = convert(
            row.get(column) if column else None,
            mapping.valid_from,
            "time",
            mapping.timezone,
            "valid_from",
        )
        if when is None:
            raise RowError(column, "valid_from is empty")
    numeric: dict[str, float] = {}
    categorical: dict[str, str] = {}
    dates: dict[str, str] = {}
    for column, (kind, fmt) in attributes.items():
        cell = row.get(column)
        if cell is None or pd.isna(cell):
            continue  # missing stays missing: the learner handles it
        name = attribute_name(column)
        if kind == "numeric":
            number = pd.to_numeric(cell, errors="coerce")
            if pd.isna(number):
                raise RowError(column, f"{cell!r} is not a number (the column is numeric)")
            numeric[name] = float(number)
        elif kind == "date":
            parsed = pd.to_datetime(cell, format=fmt if fmt != "%Y-%m-%d" else "ISO8601")
            dates[name] = parsed.date().isoformat()
        else:
            categorical[name] = str(cell)
    values.update(event_time=when, numeric=numeric, categorical=categorical, dates=dates)
    values["event_id"] = derived_id(CustomerAttributes.topic, values)

    def column_for(loc: tuple[str, ...]) -> str | None:
        source = mapping.contact.get(loc[0]) if loc else None
        return source.column if source else (mapping.id if loc[:1] == ("customer_id",) else None)

    return cast(CustomerAttributes, validated(CustomerAttributes, values, column_for))
