"""A team's own histories mapped onto the contracts (issue 16, item 1): field names, units,
time zones and code lists from a mapping file; rows that do not map reported with file, line,
column and reason; the same file imported twice gives the same events."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from click.testing import CliRunner

from console.cli import main
from forewarn.events import DeviceTelemetry, MaintenanceVisit, Order, Ticket
from forewarn.lake import read_events
from importer.events import map_file
from importer.mapping import MappingError, event_mapping

TELEMETRY_CSV = """\
Serial;Owner;Model;Stamp;OutletF;Amps;Codes;Mode
HP-1;K-7;heat pump;2026-03-29 01:30;122;6,2;E42,E7;0
HP-1;K-7;heat pump;2026-03-29 03:30;123.8;6.4;;0
HP-1;K-7;heat pump;2026-03-29 04:30;hot;6.4;;0
HP-2;K-8;boiler;2026-03-29 05:00;;5.0;;1
HP-3;K-9;fridge;2026-03-29 05:00;100;5.0;;0
"""
TELEMETRY_MAP = """\
timezone: Europe/Berlin
fields:
  device_id: Serial
  customer_id: Owner
  device_type: {column: Model, codes: {heat pump: heat_pump, boiler: boiler}}
  event_time: {column: Stamp, format: "%Y-%m-%d %H:%M"}
  metrics:
    outlet_temp_c: {column: OutletF, scale: 0.5555555556, offset: -17.777777778}
    current_a: Amps
  error_codes: Codes
  mode: {column: Mode, codes: {"0": normal, "1": maintenance}}
"""


def _write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_telemetry_units_zones_codes_and_lists_map_onto_the_contract(tmp_path):
    mapped = map_file(
        _write(tmp_path, "readings.csv", TELEMETRY_CSV),
        event_mapping(_write(tmp_path, "map.yaml", TELEMETRY_MAP), DeviceTelemetry),
    )
    first, second, maintenance = mapped.events
    assert (first.device_id, first.customer_id, first.device_type) == ("HP-1", "K-7", "heat_pump")
    # 01:30 in Berlin is winter time (UTC+1); 03:30 the same night is summer time (UTC+2).
    assert first.event_time == datetime(2026, 3, 29, 0, 30, tzinfo=UTC)
    assert second.event_time == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)
    assert first.metrics["outlet_temp_c"] == pytest.approx(50.0)
    assert first.metrics["current_a"] == 6.2, "a decimal comma is read as a decimal point"
    assert first.error_codes == ["E42", "E7"] and second.error_codes == []
    assert maintenance.mode == "maintenance" and maintenance.metrics["outlet_temp_c"] is None
    assert [(r.line, r.column) for r in mapped.rejected] == [(4, "OutletF"), (6, "Model")]
    assert "'hot' is not a number (metrics.outlet_temp_c)" in mapped.rejected[0].reason
    assert "'fridge' is not among the codes of device_type" in mapped.rejected[1].reason


def test_the_same_rows_get_the_same_ids_so_a_second_import_adds_nothing(tmp_path):
    csv_path = _write(tmp_path, "readings.csv", TELEMETRY_CSV)
    mapping = event_mapping(_write(tmp_path, "map.yaml", TELEMETRY_MAP), DeviceTelemetry)
    home = tmp_path / "home"
    args = ["--home", str(home), "import", "telemetry", str(csv_path), "--map", str(mapping.path)]
    for _ in range(2):
        result = CliRunner().invoke(main, [*args, "--quiet"])
        assert result.exit_code == 0, result.output
    assert "imported 3 of 5 rows" in result.output
    assert "2 of 5 rows do not map" in result.output
    assert f"{csv_path} line 4, column 'OutletF'" in result.output
    lake = read_events(home / "lake", "device-telemetry")
    assert lake.num_rows == 3, "read deduplicated by event id"
    rejects = (home / "imports" / "readings.rejected.csv").read_text().splitlines()
    assert rejects[0] == "file,line,column,reason" and len(rejects) == 3


def test_orders_and_tickets_with_constants_booleans_and_counts(tmp_path):
    orders = map_file(
        _write(tmp_path, "orders.csv", "No,Cust,At,Total\nA1,C1,2026-01-05T10:00:00Z,19.90\n"),
        event_mapping(
            _write(
                tmp_path,
                "orders.yaml",
                "fields:\n  order_id: No\n  customer_id: Cust\n  event_time: At\n"
                "  amount: Total\n  channel: {value: web}\n  status: {value: placed}\n",
            ),
            Order,
        ),
    )
    assert orders.events[0].amount == 19.9 and orders.events[0].event_id.startswith("imp-")
    tickets = map_file(
        _write(
            tmp_path,
            "tickets.csv",
            "Case,Cust,At,Topic,Easy,Score\n"
            "T1,C1,2026-01-05 10:00,Störung,ja,4\nT2,C1,2026-01-05 11:00,Störung,vielleicht,4\n"
            "T3,C1,2026-01-05 12:00,Störung,ja,4.5\n",
        ),
        event_mapping(
            _write(
                tmp_path,
                "tickets.yaml",
                "fields:\n  ticket_id: Case\n  customer_id: Cust\n  event_time: At\n"
                "  category: {column: Topic, codes: {Störung: fault}}\n"
                "  ces_agree: {column: Easy, codes: {ja: true, nein: false}}\n"
                "  csat: Score\n  channel: {value: phone}\n  status: {value: opened}\n",
            ),
            Ticket,
        ),
    )
    ticket = tickets.events[0]
    assert (ticket.category, ticket.ces_agree, ticket.csat) == ("fault", True, 4)
    assert [(r.line, r.column) for r in tickets.rejected] == [(3, "Easy"), (4, "Score")]
    assert "not a whole number" in tickets.rejected[1].reason


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ("fields:\n  order: No\n", "fields.order is not a field of orders (did you mean"),
        (
            "fields:\n  order_id: No\n",
            "orders needs event_time, customer_id, channel, status, amount",
        ),
        ("timezone: Mars/Olympus\nfields:\n  order_id: No\n", "is not a time zone"),
        ("fields:\n  order_id: {column: No, value: 1}\n", "exactly one of 'column' and 'value'"),
        ("fields: [order_id]\n", "'fields' maps orders fields to your columns"),
        ("fields:\n  order_id: {colum: No}\n", "unknown keys ['colum']"),
        ("- a list\n", "a mapping file is a YAML dictionary"),
        ("fields:\n  order_id: [\n", "not YAML"),
    ],
)
def test_a_mapping_that_cannot_work_is_refused_with_the_fix(tmp_path, mapping, message):
    with pytest.raises(MappingError, match=None) as raised:
        event_mapping(_write(tmp_path, "map.yaml", mapping), Order)
    assert message in str(raised.value) and str(tmp_path / "map.yaml") in str(raised.value)


def test_a_column_named_no_is_a_column_not_false(tmp_path):
    """YAML 1.1 reads No, Yes, On, Off as booleans; a mapping reads them as names."""
    mapping = event_mapping(
        _write(
            tmp_path,
            "map.yaml",
            "fields:\n  order_id: No\n  customer_id: Yes\n  event_time: On\n  amount: Off\n"
            "  channel: {value: web}\n  status: {value: placed}\n",
        ),
        Order,
    )
    assert mapping.columns() == ["No", "Yes", "On", "Off"]


def test_columns_the_file_lacks_are_named_before_anything_is_read(tmp_path):
    mapping = event_mapping(_write(tmp_path, "map.yaml", TELEMETRY_MAP), DeviceTelemetry)
    csv_path = _write(tmp_path, "other.csv", "serial,stamp\nHP-1,2026-01-01\n")
    with pytest.raises(MappingError, match="line 1: the mapping reads columns"):
        map_file(csv_path, mapping)


def test_a_file_where_no_row_maps_is_an_error_and_writes_nothing(tmp_path):
    csv_path = _write(tmp_path, "readings.csv", TELEMETRY_CSV.replace("heat pump", "tumbler"))
    header = csv_path.read_text().splitlines()[0]
    csv_path.write_text(f"{header}\nHP-1;K-7;x;y;1;2;;0\n")
    map_path = _write(tmp_path, "map.yaml", TELEMETRY_MAP)
    home = tmp_path / "home"
    result = CliRunner().invoke(
        main, ["--home", str(home), "import", "telemetry", str(csv_path), "--map", str(map_path)]
    )
    assert result.exit_code == 2 and "nothing imported" in result.stderr
    assert "Traceback" not in result.output
    assert not (home / "lake").exists()


def test_every_mapping_in_the_docs_loads(tmp_path):
    """docs/import.md's examples are mappings that work, not sketches."""
    import re
    from pathlib import Path

    from importer.customers import CustomerMapping

    text = (Path(__file__).parents[2] / "docs" / "import.md").read_text()
    blocks = re.findall(r"```yaml\n# (\w+)\.yaml[^\n]*\n(.*?)```", text, flags=re.S)
    contracts = {
        "telemetry": DeviceTelemetry,
        "orders": Order,
        "tickets": Ticket,
        "maintenance": MaintenanceVisit,
    }
    assert sorted(name for name, _ in blocks) == [
        "customers",
        "maintenance",
        "orders",
        "telemetry",
        "tickets",
    ]
    for name, body in blocks:
        path = _write(tmp_path, f"{name}.yaml", body)
        if name == "customers":
            assert CustomerMapping.from_yaml(path).id == "CustomerId"
        else:
            assert event_mapping(path, contracts[name]).fields


def test_a_row_with_a_stray_separator_is_reported_and_parquet_reads_the_same(tmp_path):
    csv_path = _write(tmp_path, "readings.csv", TELEMETRY_CSV + "HP-1;K-7;heat pump;x;1;2;;0;9\n")
    mapping = event_mapping(_write(tmp_path, "map.yaml", TELEMETRY_MAP), DeviceTelemetry)
    mapped = map_file(csv_path, mapping)
    assert (
        mapped.rejected[-1].line == 7 and "9 fields, the header has 8" in mapped.rejected[-1].reason
    )
    import pandas as pd

    frame = pd.read_csv(_write(tmp_path, "r.csv", TELEMETRY_CSV), sep=";", dtype=str)
    frame.to_parquet(tmp_path / "readings.parquet")
    from_parquet = map_file(tmp_path / "readings.parquet", mapping)
    assert from_parquet.events == map_file(tmp_path / "r.csv", mapping).events
    assert len(from_parquet.events) == 3


def test_a_field_service_log_maps_onto_maintenance_visits(tmp_path):
    import re
    from pathlib import Path

    text = (Path(__file__).parents[2] / "docs" / "import.md").read_text()
    mapping = re.search(r"```yaml\n# maintenance\.yaml[^\n]*\n(.*?)```", text, flags=re.S)[1]
    visits = map_file(
        _write(
            tmp_path,
            "visits.csv",
            "JobNo,Serial,Owner,Started,Finished,Type,Result,Tech,Remarks\n"
            "J1,D7,C7,02.03.2026 09:00,02.03.2026 10:15,REP,OK,tom,bearing replaced\n"
            "J2,D8,C8,02.03.2026 11:00,,AUDIT,OPEN,,\n"
            "J3,D9,C9,02.03.2026 12:00,,INS,LATER,,\n",
        ),
        event_mapping(_write(tmp_path, "maintenance.yaml", mapping), MaintenanceVisit),
    )
    first, second = visits.events
    assert (first.kind, first.outcome, first.technician) == ("repair", "fixed", "tom")
    assert first.event_time == datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
    assert first.ended_at == datetime(2026, 3, 2, 9, 15, tzinfo=UTC)
    assert (second.kind, second.outcome, second.ended_at) == ("other", "not_fixed", None)
    assert [(r.line, r.column) for r in visits.rejected] == [(4, "Result")]
