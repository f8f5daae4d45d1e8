"""The device agent's checkpoint (streams/checkpoint.py): a run's states are readable at once,
stored with its readings only when the checkpoint is due, and the runs are acknowledged after
the lake and the broker hold both, in order; a changelog write that fails acknowledges nothing.

The table is a stand-in with the three things the checkpoint uses (a local store, changelog
sends, the wait for them): the real one is exercised by tests/streams/test_agents.py and,
against a broker, by tests/integration."""

from __future__ import annotations

import asyncio

import pytest

from streams.checkpoint import Checkpoint


class Table:
    def __init__(self, log: list, fail: bool = False) -> None:
        self.data: dict = {}
        self.log, self.fail = log, fail

    def send_changelog(self, partition, key, value):
        self.log.append(("changelog", partition, key, value))

    async def stored(self):
        if self.fail:
            raise ConnectionError("broker away")
        self.log.append(("stored",))


class Run:
    def __init__(self, name: str, log: list) -> None:
        self.name, self.log = name, log

    def ack(self):
        self.log.append(("ack", self.name))


def _checkpoint(log, now, fail=False, every_s=1.0, max_readings=100):
    async def archive(events):
        log.append(("lake", list(events)))

    async def before_changelog():
        log.append(("metadata",))

    table = Table(log, fail)
    return Checkpoint(table, archive, before_changelog, every_s, max_readings, lambda: now[0])


def test_states_are_readable_at_once_and_stored_with_the_readings_when_due():
    log, now = [], [10.0]
    cp = _checkpoint(log, now)
    cp.add(Run("r1", log), ["a", "b"], {"D1": (2, {"n": 1})})
    assert cp.table.data["D1"] == {"n": 1} and log == [], "nothing stored before it is due"
    now[0] = 10.5
    cp.add(Run("r2", log), ["c"], {"D1": (2, {"n": 2}), "D2": (3, {"n": 1})})
    assert not cp.due()
    now[0] = 11.0
    assert cp.due()
    assert asyncio.run(cp.store()) == 3
    # Lake, then every changed state once (its latest), awaited, then the runs in order.
    assert log == [
        ("lake", ["a", "b", "c"]),
        ("metadata",),
        ("changelog", 2, "D1", {"n": 2}),
        ("changelog", 3, "D2", {"n": 1}),
        ("stored",),
        ("ack", "r1"),
        ("ack", "r2"),
    ]
    assert not cp.due() and asyncio.run(cp.store()) == 0


def test_enough_readings_make_it_due_at_once():
    log, now = [], [0.0]
    cp = _checkpoint(log, now, max_readings=3)
    cp.add(Run("r1", log), ["a", "b"], {})
    assert not cp.due()
    cp.add(Run("r2", log), ["c"], {})
    assert cp.due()


def test_a_changelog_that_cannot_be_written_acknowledges_nothing():
    log, now = [], [0.0]
    cp = _checkpoint(log, now, fail=True, every_s=0.0)
    cp.add(Run("r1", log), ["a"], {"D1": (0, {"n": 1})})
    with pytest.raises(ConnectionError):
        asyncio.run(cp.store())
    assert not [entry for entry in log if entry[0] == "ack"]
