"""A CRM export as customer records (issue 16, item 1): typed attributes, contact fields for
the outreach pages, valid-from times the nightly reads point in time."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from console.cli import main
from forewarn.events import CustomerAttributes, decode
from importer.customers import CustomerMapping, map_customers
from importer.mapping import MappingError
from models.customer_attributes import attributes_at, read_records
from outreach.migrate import migrate
from outreach.models import CustomerProfile
from outreach.store import TaskStore
from streams.outreach_sink.agents import apply_customer_event
from tests.conftest import shared_dir
from tests.utils.kafka import read_records as read_messages

CRM = """\
Kunde,Name,Telefon,Region,Kanal,Tarif,Monatlich,Seit,Geändert
K1,Ada Keller,+44 7700 900001,Nord,Tel,basic,19.90,03.02.2024,01.01.2026
K2,Ben Roth,+44 7700 900002,Süd,Mail,pro,39.90,17.11.2025,01.01.2026
K3,Clara Lind,,Nord,Brief,basic,19.90,17.11.2025,01.01.2026
K1,Ada Keller,+44 7700 900001,Nord,Tel,pro,39.90,03.02.2024,01.03.2026
K4,Dora Vogel,+44 7700 900004,Ost,Tel,basic,zwanzig,01.06.2025,01.01.2026
"""
MAPPING = """\
id: Kunde
date_format: "%d.%m.%Y"
valid_from: {column: Geändert, format: "%d.%m.%Y"}
timezone: Europe/Berlin
contact:
  name: Name
  phone: Telefon
  territory: Region
  preferred_channel: {column: Kanal, codes: {Tel: phone, Mail: email}}
columns:
  Monatlich: numeric
"""


def _files(tmp_path, crm: str = CRM, mapping: str = MAPPING) -> tuple[Path, Path]:
    (tmp_path / "crm.csv").write_text(crm)
    (tmp_path / "crm.yaml").write_text(mapping)
    return tmp_path / "crm.csv", tmp_path / "crm.yaml"


def test_a_crm_export_becomes_typed_records_with_contact_fields(tmp_path):
    csv_path, map_path = _files(tmp_path)
    mapped = map_customers(csv_path, CustomerMapping.from_yaml(map_path))
    k1 = mapped.events[0]
    assert isinstance(k1, CustomerAttributes)
    assert (k1.customer_id, k1.name, k1.phone, k1.territory) == (
        "K1",
        "Ada Keller",
        "+44 7700 900001",
        "Nord",
    )
    assert k1.preferred_channel == "phone"
    assert k1.numeric == {"Monatlich": 19.9}
    assert k1.categorical == {"Tarif": "basic"}
    assert k1.dates == {"Seit": "2024-02-03"}
    assert k1.event_time == datetime(2025, 12, 31, 23, 0, tzinfo=UTC), "Berlin midnight"
    later_k1 = mapped.events[2]
    assert later_k1.customer_id == "K1" and later_k1.categorical == {"Tarif": "pro"}
    rejected = {r.line: (r.column, r.reason) for r in mapped.rejected}
    assert rejected[4][0] == "Kanal" and "'Brief' is not among the codes" in rejected[4][1]
    assert rejected[6] == ("Monatlich", "'zwanzig' is not a number (the column is numeric)")


def test_the_nightly_sees_each_customers_attributes_as_they_were_at_the_cut_off(tmp_path):
    csv_path, map_path = _files(tmp_path)
    home = tmp_path / "home"
    result = CliRunner().invoke(
        main,
        ["--home", str(home), "import", "customers", str(csv_path), "--map", str(map_path)],
    )
    assert result.exit_code == 0, result.output
    assert "imported 3 of 5 rows" in result.output
    records = read_records(home / "lake")
    cuts = [datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC)]
    seen = attributes_at(records, cuts).set_index(["customer_id", "cutoff"])
    assert seen.loc[("K1", cuts[0]), "crm_Tarif"] == "basic", "the March change is not known yet"
    assert seen.loc[("K1", cuts[1]), "crm_Tarif"] == "pro"
    assert seen.loc[("K1", cuts[1]), "crm_Monatlich"] == 39.9
    assert (
        seen.loc[("K2", cuts[0]), "crm_Seit"] == (cuts[0] - datetime(2025, 11, 17, tzinfo=UTC)).days
    )
    early = attributes_at(records, [datetime(2025, 12, 1, tzinfo=UTC)])
    assert early.empty, "nothing was valid yet"


def test_a_crm_record_brings_contact_details_to_the_outreach_pages(tmp_path):
    url = f"sqlite:///{tmp_path / 'outreach.db'}"
    migrate(url)
    store = TaskStore(url)
    try:
        store.import_customers([{"customer_id": "K1", "email": "ada@example.com"}])
        csv_path, map_path = _files(tmp_path)
        record = map_customers(csv_path, CustomerMapping.from_yaml(map_path)).events[0]
        assert apply_customer_event(store, record) == []
        with store.sessions() as session:
            profile = session.get(CustomerProfile, "K1")
            assert (profile.name, profile.phone, profile.preferred_channel) == (
                "Ada Keller",
                "+44 7700 900001",
                "phone",
            )
            assert profile.email == "ada@example.com", "an empty field keeps what was known"
    finally:
        store.close()


def test_a_customer_twice_at_the_same_time_is_reported(tmp_path):
    twice = CRM.splitlines()
    csv_path, map_path = _files(tmp_path, "\n".join([*twice[:2], twice[1]]) + "\n")
    mapped = map_customers(csv_path, CustomerMapping.from_yaml(map_path))
    assert len(mapped.events) == 1
    assert "customer 'K1' again (first on line 2)" in mapped.rejected[0].reason


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ("contact:\n  name: Name\n", "'id' names the customer id column"),
        ("id: Kunde\ncontact:\n  mobile: Telefon\n", "contact.mobile is not a contact field"),
        ("id: Kunde\ncolumns:\n  Tarif: text\n", "'columns' maps column names to one of"),
        ("id: Kunde\nlabel: Exited\n", "unknown keys ['label']"),
    ],
)
def test_a_customer_mapping_that_cannot_work_is_refused(tmp_path, mapping, message):
    _, map_path = _files(tmp_path, mapping=mapping)
    with pytest.raises(MappingError) as raised:
        CustomerMapping.from_yaml(map_path)
    assert message in str(raised.value)


def test_a_mapped_column_the_file_lacks_is_named_with_the_closest(tmp_path):
    csv_path, map_path = _files(tmp_path, mapping="id: Kunden\n")
    with pytest.raises(MappingError, match="did you mean 'Kunde'"):
        map_customers(csv_path, CustomerMapping.from_yaml(map_path))


def test_the_bank_churn_table_imports_whole(tmp_path):
    bank = shared_dir() / "data" / "bank_churn" / "Churn_Modelling.csv"
    (tmp_path / "bank.yaml").write_text(
        "id: CustomerId\ncontact:\n  name: Surname\ncolumns:\n  RowNumber: ignore\n"
        "  Exited: ignore\n  NumOfProducts: categorical\n  Geography: categorical\n"
    )
    mapped = map_customers(bank, CustomerMapping.from_yaml(tmp_path / "bank.yaml"))
    assert len(mapped.events) == 10_000 and mapped.rejected == []
    first = mapped.events[0]
    assert first.name == "Hargrave" and first.categorical["Geography"] == "France"
    assert set(first.numeric) == {
        "CreditScore",
        "Age",
        "Tenure",
        "Balance",
        "HasCrCard",
        "IsActiveMember",
        "EstimatedSalary",
    }


def test_records_go_to_the_compacted_customers_topic_keyed_by_customer(tmp_path, kafka_broker):
    csv_path, map_path = _files(tmp_path)
    result = CliRunner().invoke(
        main,
        [
            *("--home", str(tmp_path / "home"), "--bootstrap", kafka_broker.bootstrap),
            *("import", "customers", str(csv_path), "--map", str(map_path), "--to", "kafka"),
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "produced 3 of 5 rows" in result.output and "to customers" in result.output
    records = read_messages(kafka_broker.bootstrap, "customers", at_least=3)
    keys = sorted(r.key.decode() for r in records)
    assert keys == ["K1", "K1", "K2"]
    decoded = [decode("customers", r.value) for r in records]
    assert {e.customer_id for e in decoded} == {"K1", "K2"}
