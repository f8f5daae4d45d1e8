"""The Faust app wires every agent: autodiscovery only warns about an import error."""

from __future__ import annotations

from streams.app import app


def test_every_agent_is_discovered():
    app.discover()
    assert sorted(app.agents) == [
        "streams.customer_risk.agents.track_customers",
        "streams.device_faults.agents.track_device_faults",
        "streams.intake.agents.archive_events",
        "streams.outreach_sink.agents.store_outreach_tasks",
    ]


def test_tables_are_keyed_like_their_streams():
    app.discover()
    assert set(app.tables) >= {"device-to-fault-state", "customer-to-risk-state"}
    for table in app.tables.values():
        assert table.partitions == 4
