"""The Faust app wires every agent: autodiscovery only warns about an import error."""

from __future__ import annotations

from streams.app import app


def test_every_agent_is_discovered():
    app.discover()
    assert sorted(app.agents) == [
        "streams.customer_risk.agents.track_customers",
        "streams.device_faults.agents.track_device_faults",
        "streams.intake.agents.archive_events",
        "streams.outreach_sink.agents.close_stale_tasks",
        "streams.outreach_sink.agents.store_outreach_tasks",
    ]


def test_tables_are_keyed_like_their_streams():
    app.discover()
    assert set(app.tables) >= {"device-to-fault-state", "customer-to-risk-state"}
    for table in app.tables.values():
        assert table.partitions == 4


def test_an_unforeseen_error_stops_the_worker_instead_of_acknowledging(tmp_path):
    """An exception leaving an agent's batch would acknowledge it unprocessed (a crash lost
    7,704 readings of the hostile-input test); fail_stop exits the process instead, as a
    kill -9 would, so the batch is read again after the restart."""
    import os
    import subprocess
    import sys

    script = (
        "from streams.app import fail_stop\n"
        "with fail_stop('scoring a batch of readings'):\n"
        "    raise KeyError('surprise')\n"
        "print('acknowledged')\n"
    )
    env = {**os.environ, "FOREWARN_HOME": str(tmp_path), "PYTHONPATH": os.getcwd()}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env
    )
    assert done.returncode == 70
    assert "acknowledged" not in done.stdout
    assert "scoring a batch of readings failed; stopping this worker" in done.stderr
    assert "KeyError: 'surprise'" in done.stderr
