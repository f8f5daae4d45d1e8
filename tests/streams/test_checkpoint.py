"""The device agent's checkpoint (streams/checkpoint.py): a run's states are readable at once,
stored with its readings only when the checkpoint is due, after the broker holds the alerts
the runs sent, and the runs are acknowledged after the lake and the broker hold both, in
order, while the next runs are scored (the lake file is written meanwhile too); a changelog
write or an alert that fails acknowledges nothing.

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

    async def send_changelog_now(self, partition, key, value):
        self.log.append(("changelog", partition, key, value))

    async def stored(self):
        if self.fail:
            raise ConnectionError("broker away")
        self.log.append(("stored",))


async def _store(cp: Checkpoint) -> int:
    """Store the checkpoint and wait for its acknowledgements (the agent does not wait)."""
    stored = await cp.store()
    await cp.acknowledged()
    return stored


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


def test_states_are_held_and_stored_encoded_with_the_readings_when_due():
    log, now = [], [10.0]
    cp = _checkpoint(log, now)
    held = cp.held  # what the step reads before the table
    cp.add(Run("r1", log), ["a", "b"], {"D1": (2, {"n": 1})})
    assert held["D1"] == {"n": 1} and log == [], "nothing stored before it is due"
    assert "D1" not in cp.table.data, "the table gets states at the checkpoint"
    now[0] = 10.5
    cp.add(Run("r2", log), ["c"], {"D1": (2, {"n": 2}), "D2": (3, {"n": 1})})
    assert not cp.due()
    now[0] = 11.0
    assert cp.due()
    assert asyncio.run(_store(cp)) == 3
    assert cp.table.data == {"D1": {"n": 2}, "D2": {"n": 1}} and held == {}, "the same dict"
    # Every changed state once (its latest), awaited, then the runs in order; the lake file
    # is written meanwhile, before any run is acknowledged.
    assert log.index(("lake", ["a", "b", "c"])) < log.index(("ack", "r1"))
    assert [entry for entry in log if entry[0] != "lake"] == [
        ("metadata",),
        ("changelog", 2, "D1", {"n": 2}),
        ("changelog", 3, "D2", {"n": 1}),
        ("stored",),
        ("ack", "r1"),
        ("ack", "r2"),
    ]
    assert not cp.due() and asyncio.run(_store(cp)) == 0


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
        asyncio.run(_store(cp))
    assert not [entry for entry in log if entry[0] == "ack"]


def test_a_state_changed_by_many_runs_is_encoded_once_per_checkpoint():
    log, now, encoded = [], [0.0], []
    cp = _checkpoint(log, now)

    def encode(state):
        encoded.append(state["n"])
        return {"n": state["n"], "encoded": True}

    cp.encode = encode
    state = {"n": 0}
    for run in range(5):
        state["n"] = run  # the step changes the held object in place
        cp.add(Run(f"r{run}", log), ["x"], {"D1": (1, state)})
    assert cp.held["D1"] is state and encoded == []
    asyncio.run(_store(cp))
    assert encoded == [4] and cp.table.data["D1"] == {"n": 4, "encoded": True}
    assert ("changelog", 1, "D1", {"n": 4, "encoded": True}) in log


def test_settled_states_go_to_the_table_and_the_checkpoint_sends_what_the_table_holds():
    log, now = [], [0.0]
    cp = _checkpoint(log, now)
    cp.add(Run("r1", log), ["x"], {"D1": (1, {"n": 1, "p": 1}), "D2": (2, {"n": 1, "p": 2})})
    cp.settle(lambda state: state["p"] == 1)  # partition 1 revoked
    assert cp.table.data == {"D1": {"n": 1, "p": 1}} and list(cp.held) == ["D2"]
    cp.table.data["D1"] = {"n": 7, "p": 1}  # recovered: another worker's newer state
    asyncio.run(_store(cp))
    assert ("changelog", 1, "D1", {"n": 7, "p": 1}) in log
    assert ("changelog", 2, "D2", {"n": 1, "p": 2}) in log


def test_runs_are_acknowledged_when_the_broker_holds_their_states_and_scoring_goes_on_meanwhile():
    log, now = [], [0.0]
    cp = _checkpoint(log, now, every_s=0.0)

    async def scenario():
        held = asyncio.Event()  # set when the broker holds the records

        async def stored():
            await held.wait()
            log.append(("stored",))

        cp.table.stored = stored
        cp.add(Run("r1", log), ["a"], {"D1": (0, {"n": 1})})
        assert await cp.store() == 1
        cp.add(Run("r2", log), ["b"], {"D1": (0, {"n": 2})})  # scored while r1's states travel
        await asyncio.sleep(0.01)
        assert ("ack", "r1") not in log, "not before the broker holds its states"
        second = asyncio.ensure_future(cp.store())
        await asyncio.sleep(0.01)
        assert not second.done(), "the next checkpoint waits for the last one's acks"
        held.set()
        await second
        await cp.acknowledged()
        acks = [entry for entry in log if entry[0] in ("ack", "stored")]
        assert acks == [("stored",), ("ack", "r1"), ("stored",), ("ack", "r2")]

    asyncio.run(scenario())


def test_the_next_runs_are_scored_while_the_lake_is_written_and_acknowledged_after_it():
    """The lake write does not hold the agent (it held every reading that came during it):
    ``store`` returns while the file is written, and no run is acknowledged before it is."""
    log, now = [], [0.0]
    cp = _checkpoint(log, now, every_s=0.0)

    async def scenario():
        written = asyncio.Event()

        async def slow_archive(events):
            await written.wait()
            log.append(("lake", list(events)))

        cp.archive = slow_archive
        cp.add(Run("r1", log), ["a"], {"D1": (0, {"n": 1})})
        await asyncio.wait_for(cp.store(), 1)  # returns with the lake file still pending
        cp.add(Run("r2", log), ["b"], {"D1": (0, {"n": 2})})  # the next run, scored meanwhile
        await asyncio.sleep(0.01)
        assert not [e for e in log if e[0] == "ack"], "acknowledged before the lake holds it"
        written.set()
        await cp.acknowledged()
        assert [e[0] for e in log][-2:] == ["lake", "ack"]
        await _store(cp)

    asyncio.run(scenario())
    assert [e[:2] for e in log if e[0] in ("lake", "ack")] == [
        ("lake", ["a"]),
        ("ack", "r1"),
        ("lake", ["b"]),
        ("ack", "r2"),
    ]


def test_the_states_are_written_only_once_the_broker_holds_the_runs_alerts():
    """Alerts are sent as they are raised and waited for at the checkpoint: a state that
    remembers an alert never reaches the changelog before the alert reaches its topic."""
    log, now = [], [0.0]
    cp = _checkpoint(log, now, every_s=0.0)

    async def scenario():
        alert = asyncio.get_running_loop().create_future()
        alert.add_done_callback(lambda _: log.append(("alert held",)))
        cp.add(Run("r1", log), ["a"], {"D1": (0, {"n": 1})}, sent=[alert])
        storing = asyncio.ensure_future(cp.store())
        await asyncio.sleep(0.01)
        assert not storing.done() and not [e for e in log if e[0] == "changelog"]
        alert.set_result(None)
        await storing
        await cp.acknowledged()

    asyncio.run(scenario())
    assert [e[0] for e in log] == ["lake", "alert held", "metadata", "changelog", "stored", "ack"]


def test_an_alert_the_broker_refused_writes_no_state_and_acknowledges_nothing():
    log, now = [], [0.0]
    cp = _checkpoint(log, now, every_s=0.0)

    async def scenario():
        alert = asyncio.get_running_loop().create_future()
        alert.set_exception(ConnectionError("broker away"))
        cp.add(Run("r1", log), ["a"], {"D1": (0, {"n": 1})}, sent=[alert])
        with pytest.raises(ConnectionError):
            await cp.store()
        assert cp.runs and cp.held, "kept: nothing of the run was stored"

    asyncio.run(scenario())
    assert [e[0] for e in log] == ["lake"]


def test_a_failure_after_store_returned_is_raised_by_the_timers_check():
    log, now = [], [0.0]
    cp = _checkpoint(log, now, fail=True, every_s=0.0)

    async def scenario():
        cp.add(Run("r1", log), ["a"], {"D1": (0, {"n": 1})})
        await cp.store()
        await asyncio.sleep(0.01)
        with pytest.raises(ConnectionError):
            cp.raise_failure()

    asyncio.run(scenario())
    assert not [entry for entry in log if entry[0] == "ack"]
