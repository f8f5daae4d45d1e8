"""Customers: risk and negative feedback from orders, tickets, device faults and values."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from forewarn.events import PARTITIONS, InvalidEvent, ModelUpdated, decode, encode
from streams import tables
from streams.app import (
    alerts_topic,
    app,
    archived_topics,
    customer_topics,
    deliver,
    fail_stop,
    settings,
)
from streams.continuity import Record, continuity_of, fill_holes, records_of
from streams.customer_risk.detector import CustomerRiskDetector, NegativeFeedbackDetector
from streams.customer_risk.model import ModelHolder
from streams.customer_risk.step import CustomerStep
from streams.dead_letters import counters, dead_letter, reject, status, unreadable_letters
from streams.tables import stored_table

log = logging.getLogger(__name__)

risk_detector = CustomerRiskDetector()
feedback_detector = NegativeFeedbackDetector()
# Models are loaded from the registry folder only, never from a path in a message (issue 13).
churn_model = ModelHolder(settings.models_dir / "churn")
# Keyed by customer_id like orders, tickets, customer-values and customer-signals; each state in
# its event's partition. An event is acknowledged once the broker holds the states it changed.
customer_to_risk_state = stored_table(
    app, "customer-to-risk-state", default=dict, partitions=PARTITIONS
)


# Orders and tickets the stream skipped are read back before the customer's state moves on
# (streams/continuity.py): checked per event, so no alert waits for a batch to fill.
continuity = continuity_of(app, settings.kafka_bootstrap, settings.group_id)


# Events are applied by a Kafka-free step (the replay and the tests run the same one), with
# the churn model in service when each event is scored.
step = CustomerStep(
    customer_to_risk_state,
    risk=risk_detector,
    feedback=feedback_detector,
    model=lambda: churn_model.model,
)


# Events whose states are on their way to the changelog (held here: asyncio keeps only weak
# references to tasks).
_acknowledging: set[asyncio.Future[None]] = set()


@app.agent(customer_topics)
async def track_customers(stream):  # type: ignore[no-untyped-def]
    """Each event is applied, its alerts delivered and its states written, then acknowledged
    once the broker holds those states: until then Faust does not commit it, so a crash reads
    it again instead of losing what it changed (Faust sends a table's changelog in the
    background and commits without waiting for it). The next event does not wait for that."""
    async for event in stream.noack().events():
        with fail_stop("updating a customer"):
            await track(await fill_holes(continuity, records_of([event]), counters, "customers"))
        # The writes are taken now: a task's body runs later, after the next event's writes.
        written = customer_to_risk_state.stored()
        acking = asyncio.ensure_future(acknowledge_when_stored(written, event))
        _acknowledging.add(acking)
        acking.add_done_callback(_acknowledging.discard)


async def acknowledge_when_stored(written: Awaitable[Any], event: Any) -> None:
    """Acknowledge ``event`` once ``written`` (``StoredTable.stored()``: the broker holds the
    changelog writes) resolves; stop the worker if a write failed (the event stays
    unacknowledged and is read again)."""
    with fail_stop("writing customer states to their changelog"):
        await tables.acknowledge_when_stored(written, [event])


async def track(records: list[Record]) -> None:
    """Apply messages to their customers' states: deliver the alerts they raise, then write
    the states that remember them."""
    events, invalid = [], []
    for topic, partition, offset, value in records:
        try:
            events.append((topic, partition, offset, decode(topic, value)))
        except InvalidEvent as exc:
            # Source events are dead-lettered by streams.intake; customer values and signals
            # are not archived, so a bad one is reported here. The customer keeps the value
            # they had, and the rest of the stream flows on.
            if topic not in archived_topics.topics:
                invalid.append(dead_letter(topic, partition, offset, value, str(exc)))
    await reject(invalid, "invalid")
    outcome = step.run(events)
    counters["customers.replayed"] += outcome.counts["replayed"]
    values = {(t, p, o): value for t, p, o, value in records}
    refused = [
        dead_letter(
            r.topic, r.partition, r.offset, values[(r.topic, r.partition, r.offset)], r.reason
        )
        for r in outcome.refused
    ]
    await reject(refused, "refused")
    if outcome.unreadable:
        await reject(
            unreadable_letters(outcome.unreadable, customer_to_risk_state), "state_unreadable"
        )
    for alert in outcome.alerts:
        # Ids only: an explanation can quote a ticket's text (names, addresses).
        log.info("alert %s %s %s", alert.dedup_key, alert.severity, alert.alert_id)
        # Delivered before the state that remembers it (see streams.app.deliver).
        await deliver(alerts_topic, alert.dedup_key.encode(), encode(alert))
    for customer_id, state in outcome.states.items():
        customer_to_risk_state[customer_id] = state.to_dict()


@app.task
async def follow_model_updates() -> None:
    """Every worker reads all of model-updates (one partition, no consumer group) and puts
    the registry's champion in service without a restart.

    The history up to the end offset at start is gathered whole before anything is offered,
    so a restarted worker tries its newest churn update first and older ones only if that is
    refused (``ModelHolder.offer_newest``). Every refusal is visible: an error log, a
    dead letter naming the offset, ``models.rejected`` and ``churn_model_refused`` in the
    worker's counters file; the model in service stays.
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        enable_auto_commit=False,
        **settings.kafka_client_options(),
    )
    await consumer.start()
    tp = TopicPartition(ModelUpdated.topic, 0)
    consumer.assign([tp])
    await consumer.seek_to_beginning(tp)
    history_end = (await consumer.end_offsets([tp]))[tp]
    updates: list[tuple[int, ModelUpdated]] = []
    raw: dict[int, bytes | None] = {}
    try:
        while True:
            batch = await consumer.getmany(tp, timeout_ms=1000)
            for message in batch.get(tp, []):
                try:
                    update = decode(ModelUpdated.topic, message.value)
                except InvalidEvent as exc:
                    reason = (
                        f"{exc}; a model-updated message names a registry version and its "
                        "sha256 (ModelUpdated v2), nothing was loaded"
                    )
                    await refuse_model_update(message.offset, message.value, reason)
                    continue
                if isinstance(update, ModelUpdated) and update.model_name == "churn":
                    updates.append((message.offset, update))
                    raw[message.offset] = message.value
            if updates and await consumer.position(tp) >= history_end:
                refused = await asyncio.to_thread(churn_model.offer_newest, updates)
                for offset, reason in refused:
                    await refuse_model_update(offset, raw[offset], reason)
                updates, raw = [], {}
                if churn_model.model is not None:
                    status["churn_model"] = churn_model.model.version
    finally:
        await consumer.stop()


async def refuse_model_update(offset: int, value: bytes | None, reason: str) -> None:
    """Make a refused model update visible; the model in service stays."""
    log.error("refused %s[0]@%d: %s", ModelUpdated.topic, offset, reason)
    counters["models.rejected"] += 1
    # Operators watch dead letters (docs/operations.md); the counters file names the latest.
    status["churn_model_refused"] = f"{ModelUpdated.topic}[0]@{offset}: {reason}"[:300]
    await reject([dead_letter(ModelUpdated.topic, 0, offset, value, reason)], "model")
