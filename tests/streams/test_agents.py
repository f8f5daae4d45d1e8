"""The Faust agents in-process, with Faust's test context: no broker, no worker subprocess.

``Agent.test_context()`` runs an agent on an in-memory channel, and its tables are the app's
own (``store='memory://'``): a write goes to the table and queues a changelog message in the
producer's buffer, which is never started (the device agent's checkpoint hands its states to
the producer directly: those sends are recorded instead). What needs a broker is swapped out:
reading holes back (``fill_holes``), delivery, dead letters, the lake and the wait for
changelog writes (``stored``) are ``AsyncMock``s. ``fail_stop`` re-raises instead of exiting,
so a crash fails the test rather than ending pytest.

Faust's ``put`` gives every message the agent's topic name, and a topic of several names has
none (``<internal>``), so the messages here are built with their source topic, partition and
offset; they also carry the app's consumer generation, or the stream skips them.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
from aiokafka import ConsumerRecord
from faust.types import TP, Message

import streams.customer_risk.agents as customers
import streams.device_faults.agents as devices
import streams.intake.agents as intake
from forewarn.events import encode
from forewarn.lake import ArrowEvents
from streams.app import app
from streams.dead_letters import counters
from streams.transport import RunMessage
from tests.streams.test_customer_determinism import _Flaky
from tests.utils import factories


@contextlib.contextmanager
def _reraise(what: str):
    yield


async def _passthrough(continuity, records, counters, agent):
    return records


@pytest.fixture
def outbound():
    """Every outbound effect of the agents, recorded in ``outbound.log`` in the order made."""
    log: list[tuple[str, Any]] = []

    async def deliver(topic, key, value):
        log.append(("deliver", key.decode()))

    async def send(topic, key, value):  # the broker holds it at once here
        await deliver(topic, key, value)
        held = asyncio.get_running_loop().create_future()
        held.set_result(None)
        return held

    def written(table):
        on_key_set = table.on_key_set

        def record(key, value):
            log.append(("state", key))
            on_key_set(key, value)

        return record

    fakes = mock.Mock(log=log, archive=mock.AsyncMock(), reject=mock.AsyncMock(), changelog=[])
    tables = (customers.customer_to_risk_state, devices.device_to_fault_state)
    with contextlib.ExitStack() as stack:
        for module in (customers, devices, intake):
            stack.enter_context(mock.patch.object(module, "fill_holes", _passthrough))
            stack.enter_context(mock.patch.object(module, "fail_stop", _reraise))
            stack.enter_context(mock.patch.object(module, "reject", fakes.reject))
        stack.enter_context(mock.patch.object(customers, "deliver", deliver))
        stack.enter_context(mock.patch.object(devices, "send", send))
        stack.enter_context(mock.patch.object(intake, "archive", fakes.archive))
        # The device agent stores at its checkpoints: one after every run here.
        checkpoint = devices.checkpoint
        stack.enter_context(mock.patch.object(checkpoint, "archive", fakes.archive))
        stack.enter_context(mock.patch.object(checkpoint, "before_changelog", mock.AsyncMock()))
        stack.enter_context(mock.patch.object(checkpoint, "every_s", 0.0))
        # The producer never starts here, so no changelog write is ever acknowledged
        # (tests/integration/test_scale_out.py waits for real ones).
        for table in tables:
            stack.enter_context(mock.patch.object(table, "stored", mock.AsyncMock()))

        async def device_state_sent(partition, key, value):  # no producer runs here
            log.append(("state", key))
            fakes.changelog.append((partition, key))

        stack.enter_context(
            mock.patch.object(
                devices.device_to_fault_state, "send_changelog_now", device_state_sent
            )
        )
        stack.enter_context(
            mock.patch.object(
                customers.customer_to_risk_state,
                "on_key_set",
                written(customers.customer_to_risk_state),
            )
        )
        for table in tables:
            table.data.clear()
        devices.step.forget()
        yield fakes
        for table in tables:
            table.data.clear()
        checkpoint.runs.clear()
        checkpoint.readings = checkpoint.collect()
        checkpoint.dirty.clear()
        checkpoint.held.clear()
        checkpoint.since = None


async def _put(agent, topic: str, partition: int, offset: int, key: str, value: bytes) -> None:
    """Send one message from ``topic[partition]@offset`` through the agent's test channel."""
    message = Message(
        topic=topic,
        partition=partition,
        offset=offset,
        timestamp=time.time(),
        timestamp_type=0,
        headers=None,
        key=key.encode(),
        value=value,
        checksum=b"",
        generation_id=app.consumer_generation_id,
    )
    agent.to_message = lambda *args, **kwargs: message
    await asyncio.wait_for(agent.put(value=value, key=key.encode()), 5)


def _letters(fakes) -> list[tuple[str, int, str, str]]:
    """The dead letters stored: (source topic, offset, kind, reason)."""
    return [
        (letter.source_topic, letter.source_offset, kind, letter.reason)
        for (letters, kind), _ in fakes.reject.await_args_list
        for letter in letters
    ]


async def _until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """``put`` returns once the stream took the message; the agent's work follows."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the agent did not get there in time"
        await asyncio.sleep(0.01)


def _complaint(day: int):
    return factories.ticket(
        event_id=f"T{day}-1",
        ticket_id=f"T{day}",
        event_time=factories.T0 + timedelta(days=day),
        category="complaint",
        contact_number=3,
        csat=1,
        nps=1,
    )


def test_customer_agent_delivers_alerts_before_the_state_that_remembers_them(outbound):
    async def run() -> None:
        async with customers.track_customers.test_context() as agent:
            for day in range(3):
                await _put(agent, "tickets", 2, 10 + day, "C00001", encode(_complaint(day)))
                await _until(lambda: outbound.log and outbound.log[-1][0] == "state")

    asyncio.run(run())
    # Each event's alerts, then its state: never a state before the alerts it remembers.
    kinds = "".join(kind[0] for kind, _ in outbound.log)
    assert re.fullmatch(r"(d*s){3}", kinds) and "dd" in kinds, kinds
    state = customers.customer_to_risk_state["C00001"]
    assert state["offsets"] == {"tickets:2": 12} and state["at_risk"]


def test_a_customer_event_is_acknowledged_only_once_the_broker_holds_its_states():
    async def run(fails: bool) -> mock.Mock:
        written, event = asyncio.get_running_loop().create_future(), mock.Mock()
        acking = asyncio.ensure_future(customers.acknowledge_when_stored(written, event))
        await asyncio.sleep(0.01)
        assert not event.ack.called, "not before the broker answers"
        if fails:
            written.set_exception(ConnectionError("broker away"))
        else:
            written.set_result([None])
        await asyncio.gather(acking, return_exceptions=True)
        return event

    assert asyncio.run(run(fails=False)).ack.called
    with mock.patch.object(customers, "fail_stop", _reraise):  # the worker would stop here
        assert not asyncio.run(run(fails=True)).ack.called


def test_each_customer_event_waits_for_its_own_states_before_it_is_acknowledged(outbound):
    """Through the agent: two events in a row, each with its own changelog writes; neither is
    acknowledged before the broker holds its own (Faust commits only what is acknowledged)."""
    writes: list[asyncio.Future] = []
    acked: list[int] = []

    def stored():
        writes.append(asyncio.get_running_loop().create_future())
        return writes[-1]

    async def run() -> None:
        async with customers.track_customers.test_context() as agent:
            for day in range(2):
                await _put(agent, "tickets", 0, 20 + day, "C00001", encode(_complaint(day)))
            await _until(lambda: len(writes) == 2)
            await asyncio.sleep(0.05)
            assert acked == [], "nothing before the broker answers"
            writes[1].set_result([None])
            await _until(lambda: acked == [21])
            writes[0].set_result([None])
            await _until(lambda: sorted(acked) == [20, 21])

    def ack(event):
        acked.append(event.message.offset)

    with (
        mock.patch.object(customers.customer_to_risk_state, "stored", stored),
        mock.patch("faust.events.Event.ack", autospec=True, side_effect=ack),
    ):
        asyncio.run(run())


def test_customer_agent_skips_a_replayed_offset(outbound):
    async def run() -> None:
        async with customers.track_customers.test_context() as agent:
            await _put(agent, "tickets", 0, 5, "C00001", encode(_complaint(0)))
            await _until(lambda: ("state", "C00001") in outbound.log)
            before = counters["customers.replayed"]
            await _put(agent, "tickets", 0, 5, "C00001", encode(_complaint(0)))
            await _until(lambda: counters["customers.replayed"] == before + 1)

    asyncio.run(run())
    assert [kind for kind, _ in outbound.log].count("state") == 1


def test_customer_agent_dead_letters_what_intake_does_not(outbound):
    """A bad customer value is dead-lettered here; a bad ticket is intake's to dead-letter."""

    async def run() -> None:
        async with customers.track_customers.test_context() as agent:
            await _put(agent, "tickets", 0, 1, "C00001", b"not json")
            await _put(agent, "customer-values", 0, 1, "C00001", b"not json")
            await _until(lambda: _letters(outbound) != [])

    asyncio.run(run())
    assert [letter[:3] for letter in _letters(outbound)] == [("customer-values", 1, "invalid")]
    assert "C00001" not in customers.customer_to_risk_state


def test_customer_agent_dead_letters_an_event_the_detectors_fail_on(outbound):
    ticket = _complaint(0)
    with mock.patch.object(customers.step, "risk", _Flaky(fails_on=ticket.event_id)):

        async def run() -> None:
            async with customers.track_customers.test_context() as agent:
                await _put(agent, "tickets", 1, 4, "C00001", encode(ticket))
                await _until(lambda: ("state", "C00001") in outbound.log)

        asyncio.run(run())
    ((topic, offset, kind, reason),) = _letters(outbound)
    assert (topic, offset, kind) == ("tickets", 4, "refused") and "boom" in reason
    state = customers.customer_to_risk_state["C00001"]
    assert state["contacts"] == [] and state["offsets"] == {"tickets:1": 4}
    assert ("deliver", "retention:C00001") not in outbound.log


def test_device_agent_archives_scores_and_writes_a_batch(outbound):
    async def run() -> None:
        async with devices.track_device_faults.test_context() as agent:
            for i in range(30):
                reading = factories.telemetry(i)
                await _put(agent, "device-telemetry", 1, 100 + i, "D00001", encode(reading))
            await _put(agent, "device-telemetry", 1, 130, "D00001", b"not json")
            await _until(lambda: ("state", "D00001") in outbound.log)

    asyncio.run(run())
    assert _archived(outbound) == [f"D00001-{i}" for i in range(30)]
    assert [letter[:3] for letter in _letters(outbound)] == [("device-telemetry", 130, "invalid")]
    state = devices.device_to_fault_state["D00001"]
    assert (state["partition"], state["last_offset"]) == (1, 129)


def test_device_agent_takes_a_run_as_one_batch_and_writes_states_to_its_partition(outbound):
    # What the worker's transport delivers: one message for a partition's fetched run. One bad
    # reading in it is dead-lettered; the rest are archived in one write and scored. D00013's
    # JSON key hashes to changelog partition 2, its telemetry partition is 1: its state must
    # go to 1, where the worker that owns the partition recovers it.
    values = [encode(factories.telemetry(i, device_id="D00013")) for i in range(30)]
    values[7] = b"not json"
    records = [
        ConsumerRecord("device-telemetry", 1, 200 + i, 0, 0, b"D00013", v, None, 6, len(v), ())
        for i, v in enumerate(values)
    ]
    run = RunMessage(TP("device-telemetry", 1), records, app.consumer_generation_id)
    table = devices.device_to_fault_state

    async def go() -> None:
        async with devices.track_device_faults.test_context() as agent:
            agent.to_message = lambda *args, **kwargs: run
            await asyncio.wait_for(agent.put(value=b"", key=b"D00013"), 5)
            await _until(lambda: ("state", "D00013") in outbound.log)

    asyncio.run(go())
    assert outbound.archive.await_count == 1
    assert _archived(outbound) == [f"D00001-{i}" for i in range(30) if i != 7]  # event ids
    assert [letter[:3] for letter in _letters(outbound)] == [("device-telemetry", 207, "invalid")]
    assert (table["D00013"]["partition"], table["D00013"]["last_offset"]) == (1, 229)
    assert outbound.changelog == [(1, "D00013")]
    devices.device_to_fault_state.stored.assert_awaited()


def test_intake_agent_archives_the_valid_and_dead_letters_the_rest(outbound):
    async def run() -> None:
        async with intake.archive_events.test_context() as agent:
            await _put(agent, "orders", 0, 0, "C00001", encode(factories.order()))
            await _put(agent, "orders", 0, 1, "C00001", b"{}")
            await _put(agent, "tickets", 3, 0, "C00001", encode(factories.ticket()))
            await _until(lambda: len(_archived(outbound)) == 2 and _letters(outbound) != [])

    with mock.patch.object(intake, "ARCHIVE_WITHIN_S", 0.05):
        asyncio.run(run())
    assert _archived(outbound) == ["C00001-O0001-placed", "C00001-T0001-1"]
    assert [letter[:3] for letter in _letters(outbound)] == [("orders", 1, "invalid")]


def _archived(fakes) -> list[str]:
    """Event ids archived, in order: events, or the device agent's (converted as they came)."""
    ids = []
    for call in fakes.archive.await_args_list:
        events = call.args[0]
        if isinstance(events, ArrowEvents):
            ids += [i for *_, table in events.tables() for i in table["event_id"].to_pylist()]
        else:
            ids += [e.event_id for e in events]
    return ids


def test_device_agent_reports_a_state_it_cannot_read_and_scores_on(outbound):
    """A damaged device state (or one a newer version wrote with a field of another type)
    must neither stop every device's scoring (it crash-looped the worker) nor be reset in
    silence: the device starts over, the document is dead-lettered whole, the rest scores."""
    table = devices.device_to_fault_state
    table.data["D00002"] = {"metrics": {"vibration_mm_s": {"baseline": "not a baseline"}}}

    async def run() -> None:
        async with devices.track_device_faults.test_context() as agent:
            for i in range(10):
                for device in ("D00001", "D00002"):
                    reading = factories.telemetry(i, device_id=device)
                    await _put(
                        agent,
                        "device-telemetry",
                        1,
                        2 * i + (device == "D00002"),
                        device,
                        encode(reading),
                    )
            await _until(lambda: outbound.log.count(("state", "D00002")) >= 1)

    asyncio.run(run())
    letters = [letter for letter in _letters(outbound) if letter[2] == "state_unreadable"]
    assert len(letters) == 1, _letters(outbound)
    topic, offset, _, reason = letters[0]
    assert topic == table.changelog_topic.get_topic_name() and offset == 1
    assert "stored state of device D00002 could not be read" in reason
    (stored,) = [
        letter
        for (batch, kind), _ in outbound.reject.await_args_list
        for letter in batch
        if kind == "state_unreadable"
    ]
    assert b"not a baseline" in base64.b64decode(stored.raw)
    fresh = table["D00002"]
    assert fresh["counters"]["state_unreadable"] == 1 and fresh["last_offset"] == 19
    assert (
        table["D00001"]["last_offset"] == 18
        and "state_unreadable" not in table["D00001"]["counters"]
    )


def test_customer_agent_reports_a_state_it_cannot_read_and_goes_on(outbound):
    """As the device agent: the customer starts over, the document is dead-lettered whole,
    and the next customer's events are applied."""
    table = customers.customer_to_risk_state
    table.data["C00001"] = {"tickets": "not a window", "unknown": 1}

    async def run() -> None:
        async with customers.track_customers.test_context() as agent:
            await _put(agent, "tickets", 0, 5, "C00001", encode(_complaint(0)))
            other = factories.ticket(
                customer_id="C00002", ticket_id="C00002-T0001", event_id="C00002-T0001-1"
            )
            await _put(agent, "tickets", 0, 6, "C00002", encode(other))
            await _until(lambda: ("state", "C00002") in outbound.log)

    asyncio.run(run())
    letters = [letter for letter in _letters(outbound) if letter[2] == "state_unreadable"]
    assert [(t, o) for t, o, _, _ in letters] == [(table.changelog_topic.get_topic_name(), 5)]
    assert "stored state of customer C00001 could not be read" in letters[0][3]
    assert table["C00001"]["offsets"] == {"tickets:0": 5}, "started over, then applied"
    assert "C00002" in table
