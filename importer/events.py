"""A team's history as Forewarn events: each row of a CSV or Parquet file mapped onto a
contract (:mod:`importer.mapping`) and validated by it, exactly as the stream validates.

A row that does not map (a missing required value, a time in no known format, a code the
mapping does not list, a value the contract refuses) is not imported: it is reported with its
line, column and reason (:class:`importer.mapping.Rejected`), and the rest go on.

Examples
--------
>>> import tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> _ = (folder / "orders.csv").write_text(
...     "No;Cust;When;Cents;Src\\n"
...     "A1;C1;05.01.2026 10:00;2590;W\\n"
...     "A2;C2;05.01.2026 11:30;990;X\\n")
>>> _ = (folder / "orders.yaml").write_text(
...     "timezone: Europe/Berlin\\n"
...     "fields:\\n"
...     "  order_id: No\\n"
...     "  customer_id: Cust\\n"
...     "  event_time: {column: When, format: '%d.%m.%Y %H:%M'}\\n"
...     "  amount: {column: Cents, scale: 0.01}\\n"
...     "  channel: {column: Src, codes: {W: web, T: phone}}\\n"
...     "  status: {value: placed}\\n")
>>> from forewarn.events import Order
>>> mapped = map_file(folder / "orders.csv", event_mapping(folder / "orders.yaml", Order))
>>> order = mapped.events[0]
>>> order.amount, str(order.channel), order.event_time.isoformat()
(25.9, 'web', '2026-01-05T09:00:00+00:00')
>>> rejected = mapped.rejected[0]
>>> rejected.line, rejected.column, rejected.reason
(3, 'Src', "'X' is not among the codes of channel (W, T); add it to codes or set other")
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import types
import typing
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
from pydantic import AwareDatetime, ValidationError

from forewarn.events import Event
from importer.mapping import EventMapping, Mapped, MappingError, Rejected, Source, event_mapping
from importer.reading import header_of, rows_of

__all__ = ["RowError", "event_mapping", "events_of", "map_file", "validated"]

TRUE, FALSE = frozenset({"1", "true", "yes", "y", "t"}), frozenset({"0", "false", "no", "n", "f"})


class RowError(ValueError):
    """One cell that does not convert; ``column`` names it."""

    def __init__(self, column: str | None, reason: str) -> None:
        super().__init__(reason)
        self.column = column


def _kind(annotation: Any) -> str:
    """What a contract field holds: time, float, int, bool, list, map or text."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return _kind(args[0])
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return _kind(inner[0])
    if origin is list:
        return "list"
    if origin is dict:
        return "map:" + _kind(args[1])
    if annotation is AwareDatetime or annotation is datetime:
        return "time"
    if annotation is bool:
        return "bool"
    if annotation is int:
        return "int"
    if annotation is float:
        return "float"
    return "text"


def _time(cell: str, source: Source, zone: str) -> datetime:
    try:
        if source.format:
            parsed = datetime.strptime(cell, source.format)
        else:
            parsed = pd.Timestamp(cell).to_pydatetime()
    except ValueError:
        how = f"the format {source.format!r}" if source.format else "ISO 8601 (or give format)"
        raise RowError(source.column, f"{cell!r} is not a time in {how}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=ZoneInfo(source.timezone or zone))
    return parsed.astimezone(UTC)


def _number(cell: str, source: Source, what: str) -> float:
    try:
        value = float(cell.replace(",", ".") if cell.count(",") == 1 and "." not in cell else cell)
    except ValueError:
        raise RowError(source.column, f"{cell!r} is not a number ({what})") from None
    # Rounded to 9 decimals: 2590 x 0.01 is 25.900000000000002 in binary floating point.
    return round(value * source.scale + source.offset, 9)


def convert(cell: Any, source: Source, kind: str, zone: str, what: str) -> Any:
    """The value of one field from its cell (a string from the file, or None when empty)."""
    if source.column is None:
        cell = source.value
    if cell is None or (isinstance(cell, float) and math.isnan(cell)):
        return None  # an empty cell (pandas may hand it over as NaN)
    if source.codes is not None:
        key = str(cell)
        if key in source.codes:
            cell = source.codes[key]
        elif source.other is not None:
            cell = source.other
        else:
            listed = ", ".join(list(source.codes)[:8])
            raise RowError(
                source.column,
                f"{key!r} is not among the codes of {what} ({listed}); add it to codes or set "
                "other",
            )
        if cell is None:
            return None
    if kind == "time":
        if isinstance(cell, datetime):
            return cell if cell.tzinfo else cell.replace(tzinfo=ZoneInfo(zone))
        return _time(str(cell), source, zone)
    if kind == "float":
        return _number(str(cell), source, what)
    if kind == "int":
        number = _number(str(cell), source, what)
        if number != int(number):
            raise RowError(source.column, f"{cell!r} is not a whole number ({what})")
        return int(number)
    if kind == "bool":
        text = str(cell).strip().lower()
        if text in TRUE or text in FALSE:
            return text in TRUE
        raise RowError(source.column, f"{cell!r} is not yes/no, true/false or 1/0 ({what})")
    if kind == "list":
        parts = re.split(re.escape(source.split) if source.split else r"[;,]", str(cell))
        return [p.strip() for p in parts if p.strip()]
    return str(cell)


def derived_id(topic: str, values: dict[str, Any]) -> str:
    """An event id from a row's mapped values: the same row always gets the same id."""
    text = json.dumps(values, sort_keys=True, default=str)
    return f"imp-{hashlib.sha256(f'{topic}|{text}'.encode()).hexdigest()[:32]}"


def map_row(row: dict[str, Any], mapping: EventMapping) -> Event:
    """One row (column -> cell) as an event of ``mapping.contract``; :class:`RowError` with the
    column and reason when it does not map."""
    contract = mapping.contract
    values: dict[str, Any] = {}
    for name, source in mapping.fields.items():
        kind = _kind(contract.model_fields[name].annotation)
        if isinstance(source, dict):
            inner = kind.split(":", 1)[1]
            values[name] = {
                key: convert(row.get(s.column), s, inner, mapping.timezone, f"{name}.{key}")
                for key, s in source.items()
            }
        else:
            value = convert(row.get(source.column), source, kind, mapping.timezone, name)
            if value is not None:
                values[name] = value
    if "event_id" not in values:
        values["event_id"] = derived_id(contract.topic, values)

    def column_for(loc: tuple[str, ...]) -> str | None:
        source = mapping.fields.get(loc[0]) if loc else None
        if isinstance(source, dict):  # a map field: the key's own column
            inner = source.get(loc[1]) if len(loc) > 1 else None
            return inner.column if inner else None
        return source.column if source else None

    return validated(contract, values, column_for)


def validated(
    contract: type[Event],
    values: dict[str, Any],
    column_for: Callable[[tuple[str, ...]], str | None],
) -> Event:
    """``values`` as an event of ``contract``, or a :class:`RowError` naming the column behind
    the contract's first refusal (``column_for`` maps the refused field's location to it)."""
    try:
        return contract.model_validate(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = tuple(str(part) for part in first["loc"])
        detail = first["msg"]
        if first["type"] == "missing":
            detail = "empty, and the contract requires it"
        raise RowError(column_for(loc), f"{loc[0] if loc else 'row'}: {detail}") from None


def events_of(
    path: Path, mapping: EventMapping, on_reject: Callable[[Rejected], None], notes: list[str]
) -> Iterator[Event]:
    """The events of ``path``, mapped row by row as they are read (``importer.reading``);
    each row that does not map goes to ``on_reject``. The header is checked at once: raises
    ``TableError`` (no usable header) or :class:`MappingError` (a column the mapping reads is
    not in it) before any row is read."""
    path = Path(path)
    header, separator = header_of(path, mapping.separator)
    if mapping.separator is None and separator not in (None, ","):
        notes.append(f"separator {separator!r} (the header splits into {len(header)} columns)")
    missing = [c for c in dict.fromkeys(mapping.columns()) if c not in header]
    if missing:
        raise MappingError(
            f"{path} line 1: the mapping reads columns {missing} that are not in the header "
            f"(columns: {', '.join(header)})"
        )
    return _mapped(path, separator, len(header), mapping, on_reject)


def _mapped(
    path: Path,
    separator: str | None,
    width: int,
    mapping: EventMapping,
    on_reject: Callable[[Rejected], None],
) -> Iterator[Event]:
    for row in rows_of(path, separator):
        if row.fields is not None:
            on_reject(
                Rejected(
                    row.line,
                    None,
                    f"{row.fields} fields, the header has {width} (a stray separator or quote, "
                    "or a truncated line)",
                )
            )
            continue
        try:
            yield map_row(row.cells, mapping)
        except RowError as exc:
            on_reject(Rejected(row.line, exc.column, str(exc)))


def map_file(path: Path, mapping: EventMapping) -> Mapped:
    """Every row of ``path`` mapped, held in memory (:func:`events_of` streams them)."""
    out = Mapped()
    out.events = list(events_of(path, mapping, out.rejected.append, out.notes))
    return out
