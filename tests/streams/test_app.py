"""The Faust app wires every agent: autodiscovery only warns about an import error."""

from __future__ import annotations

from unittest import mock

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


def test_a_checkpoint_write_reaches_aiokafka_as_fausts_own_write_would():
    """``StoredTable.send_changelog_now`` hands states to aiokafka's producer itself: the key,
    value and partition must be the bytes Faust's ``send_changelog`` would send, or recovery
    reads them back wrong (a swapped key and value made recovery fail: "unhashable type:
    'dict'"). The producer is a stand-in that binds each call to aiokafka's real signature;
    no broker runs in this test."""
    import asyncio
    import inspect

    import aiokafka

    import streams.device_faults.agents as devices

    table = devices.device_to_fault_state
    calls = []

    class Producer:
        async def send(self, *args, **kwargs):
            bound = inspect.signature(aiokafka.AIOKafkaProducer.send).bind(None, *args, **kwargs)
            calls.append(bound.arguments)
            held = asyncio.get_running_loop().create_future()
            held.set_result(None)
            return held

    state = {"device_id": "D00013", "metrics": {"vibration_mm_s": {"n": 3}}, "partition": 1}

    async def go():
        with mock.patch.object(app.producer, "_ensure_producer", Producer):
            await table.send_changelog_now(1, "D00013", state)
            await table.stored()
        # Faust's own write of the same state (a future: made inside the loop).
        return table.changelog_topic.as_future_message(
            key="D00013",
            value=state,
            partition=1,
            key_serializer=table.key_serializer,
            value_serializer=table.value_serializer,
        ).message

    faust_would = asyncio.run(go())
    [call] = calls
    assert call["topic"] == table.changelog_topic.get_topic_name()
    assert (call["key"], call["value"], call["partition"]) == (
        faust_would.key,
        faust_would.value,
        1,
    )
