"""Mapping files: which of a file's columns fills which field of a contract, and how.

An event mapping (YAML; docs/import.md has one per contract)::

    separator: ";"                 # optional: otherwise detected (, ; tab |)
    timezone: Europe/Berlin        # zone of times written without one (default UTC)
    fields:                        # contract field: a column, or a source
      order_id: OrderNo
      customer_id: Customer
      event_time: {column: Changed, format: "%d.%m.%Y %H:%M"}
      amount: {column: TotalCents, scale: 0.01}          # cents -> EUR: value x scale + offset
      channel: {column: Source, codes: {W: web, T: phone, F: store}}
      status: {value: delivered}                         # the same for every row
      metrics:                                           # a map field (telemetry): key -> source
        outlet_temp_c: {column: OutletF, scale: 0.5556, offset: -17.78}

A source is a column name, or a dictionary with ``column`` or ``value`` and optionally
``format`` (strptime, for times), ``timezone``, ``scale`` and ``offset`` (numbers), ``codes``
(their value -> ours; a value not listed is refused unless ``other`` says what it becomes),
and ``split`` (the separator of a list cell, default ``;`` or ``,``). ``event_id`` may be left
out: it is then derived from the row's mapped values, so importing a file twice gives the same
ids (the lake and the stream keep one of each).
"""

from __future__ import annotations

import difflib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from forewarn.events import Event

SOURCE_KEYS = (
    *("column", "value", "format", "timezone"),
    *("scale", "offset", "codes", "other", "split"),
)
EVENT_KEYS = ("separator", "timezone", "fields")


class MappingError(ValueError):
    """A mapping file that cannot be used; the message names the file, the key and the fix."""


@dataclass(frozen=True)
class Source:
    """Where one field's value comes from in a row, and how it is converted."""

    column: str | None = None
    value: Any = None
    format: str | None = None
    timezone: str | None = None
    scale: float = 1.0
    offset: float = 0.0
    codes: dict[str, Any] | None = None
    other: Any = None
    split: str | None = None

    def columns(self) -> list[str]:
        return [self.column] if self.column else []


@dataclass(frozen=True)
class EventMapping:
    """A contract and how each of its fields is filled (``dict`` for map fields)."""

    contract: type[Event]
    fields: dict[str, Source | dict[str, Source]]
    separator: str | None = None
    timezone: str = "UTC"
    path: Path | None = None

    def columns(self) -> list[str]:
        """Every column of the file the mapping reads."""
        out: list[str] = []
        for source in self.fields.values():
            for s in source.values() if isinstance(source, dict) else [source]:
                out += s.columns()
        return out


def _loader() -> type:
    """PyYAML's safe loader reading only ``true``/``false`` as booleans: YAML 1.1 also reads
    ``yes``, ``no``, ``on``, ``off``, ``y`` and ``n``, and a column named ``No`` (a row number)
    or a code ``N`` would silently become ``False``."""
    import re

    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    boolean = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
    Loader.add_implicit_resolver("tag:yaml.org,2002:bool", boolean, list("tTfF"))
    return Loader


def load_yaml(path: Path) -> dict[str, Any]:
    """A YAML dictionary from ``path``, or a :class:`MappingError` naming the file."""
    import yaml

    try:
        raw = yaml.load(Path(path).read_text(), Loader=_loader())  # a SafeLoader subclass
    except OSError as exc:
        raise MappingError(f"{path}: cannot read the mapping: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise MappingError(f"{path}: not YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise MappingError(f"{path}: a mapping file is a YAML dictionary (see docs/import.md)")
    return raw


def check_timezone(path: Path, where: str, name: Any) -> str:
    try:
        ZoneInfo(str(name))
    except (ZoneInfoNotFoundError, ValueError):
        raise MappingError(
            f"{path}: {where} {name!r} is not a time zone; use an IANA name such as "
            "'UTC' or 'Europe/Berlin'"
        ) from None
    return str(name)


def check_separator(path: Path, separator: Any) -> str | None:
    """The mapping's ``separator`` (None: detected from the header), one character."""
    if separator is not None and (not isinstance(separator, str) or len(separator) != 1):
        raise MappingError(f"{path}: separator must be one character, got {separator!r}")
    return separator


def parse_source(path: Path, where: str, raw: Any) -> Source:
    """A source from its YAML form: a column name or a dictionary of :data:`SOURCE_KEYS`."""
    if isinstance(raw, str):
        return Source(column=raw)
    if not isinstance(raw, dict):
        raise MappingError(
            f"{path}: {where} must be a column name or a dictionary with 'column' or 'value', "
            f"got {raw!r}"
        )
    unknown = sorted(set(raw) - set(SOURCE_KEYS))
    if unknown:
        raise MappingError(f"{path}: {where} has unknown keys {unknown}; allowed: {SOURCE_KEYS}")
    if ("column" in raw) == ("value" in raw):
        raise MappingError(f"{path}: {where} needs exactly one of 'column' and 'value'")
    for key in ("scale", "offset"):
        if key in raw and not isinstance(raw[key], int | float):
            raise MappingError(f"{path}: {where}.{key} must be a number, got {raw[key]!r}")
    codes = raw.get("codes")
    if codes is not None and not isinstance(codes, dict):
        raise MappingError(f"{path}: {where}.codes maps their values to ours (a dictionary)")
    if "timezone" in raw:
        check_timezone(path, f"{where}.timezone", raw["timezone"])
    return Source(
        column=str(raw["column"]) if "column" in raw else None,
        value=raw.get("value"),
        format=raw.get("format"),
        timezone=raw.get("timezone"),
        scale=float(raw.get("scale", 1.0)),
        offset=float(raw.get("offset", 0.0)),
        codes={str(k): v for k, v in codes.items()} if codes else None,
        other=raw.get("other"),
        split=raw.get("split"),
    )


def _is_map(contract: type[Event], name: str) -> bool:
    annotation = contract.model_fields[name].annotation
    return typing.get_origin(annotation) is dict


def event_mapping(path: Path, contract: type[Event]) -> EventMapping:
    """Read and check the mapping at ``path`` for ``contract``: every field named exists,
    every required field is filled, every source is well formed."""
    raw = load_yaml(path)
    unknown = sorted(set(raw) - set(EVENT_KEYS))
    if unknown:
        raise MappingError(f"{path}: unknown keys {unknown}; allowed: {', '.join(EVENT_KEYS)}")
    fields_raw = raw.get("fields")
    if not isinstance(fields_raw, dict) or not fields_raw:
        raise MappingError(f"{path}: 'fields' maps {contract.topic} fields to your columns")
    timezone = check_timezone(path, "timezone", raw.get("timezone", "UTC"))
    known = [n for n in contract.model_fields if n != "schema_version"]
    fields: dict[str, Source | dict[str, Source]] = {}
    for name, source in fields_raw.items():
        if name not in known:
            close = difflib.get_close_matches(str(name), known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise MappingError(
                f"{path}: fields.{name} is not a field of {contract.topic}{hint}; its fields: "
                f"{', '.join(known)}"
            )
        if _is_map(contract, name):
            if not isinstance(source, dict) or not source:
                raise MappingError(
                    f"{path}: fields.{name} is a map: give each key its source, e.g. "
                    f"{name}: {{temperature_c: TempColumn}}"
                )
            fields[name] = {
                str(k): parse_source(path, f"fields.{name}.{k}", v) for k, v in source.items()
            }
        else:
            fields[name] = parse_source(path, f"fields.{name}", source)
    required = [
        n
        for n, f in contract.model_fields.items()
        if f.is_required() and n not in fields and n != "event_id"
    ]
    if required:
        raise MappingError(
            f"{path}: {contract.topic} needs {', '.join(required)}; map "
            f"{'them' if len(required) > 1 else 'it'} under 'fields'"
        )
    separator = check_separator(path, raw.get("separator"))
    return EventMapping(contract, fields, separator, timezone, Path(path))


@dataclass
class Rejected:
    """A row that did not map: its line (the header is line 1), column and reason."""

    line: int
    column: str | None
    reason: str


@dataclass
class Mapped:
    """What a file gave: the events in file order, the rows refused, and notes with counts."""

    events: list[Event] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class RejectLog:
    """Rows that did not map, written to ``path`` (CSV: file, line, column, reason) as they
    come, the first few kept to show; the file is created only when there is one."""

    def __init__(self, source: Path, path: Path, shown: int = 5) -> None:
        self.source, self.path, self.shown = source, path, shown
        self.first: list[Rejected] = []
        self.count = 0
        self._file: Any = None
        self._writer: Any = None

    def add(self, rejected: Rejected) -> None:
        import csv

        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("w", newline="")
            self._writer = csv.writer(self._file)
            self._writer.writerow(["file", "line", "column", "reason"])
        self._writer.writerow([self.source, rejected.line, rejected.column or "", rejected.reason])
        self.count += 1
        if len(self.first) < self.shown:
            self.first.append(rejected)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
