"""Reading a topic back in tests."""

from __future__ import annotations

import asyncio
import time

from aiokafka import AIOKafkaConsumer, ConsumerRecord


def read_topic(
    bootstrap: str, topic: str, *, at_least: int = 0, timeout: float = 30.0, idle_ms: int = 2000
) -> list[bytes]:
    """The values of :func:`read_records`."""
    records = read_records(bootstrap, topic, at_least=at_least, timeout=timeout, idle_ms=idle_ms)
    return [r.value for r in records]


def read_records(
    bootstrap: str, topic: str, *, at_least: int = 0, timeout: float = 30.0, idle_ms: int = 2000
) -> list[ConsumerRecord]:
    """Every message (partition, offset, value) of ``topic`` from the beginning: waits up to
    ``timeout`` seconds for ``at_least`` messages, then until the topic stays quiet for
    ``idle_ms`` (so a test also sees messages it did not expect)."""

    async def read() -> list[ConsumerRecord]:
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await consumer.start()
        deadline = time.monotonic() + timeout
        try:
            values: list[ConsumerRecord] = []
            while time.monotonic() < deadline:
                batch = await consumer.getmany(timeout_ms=idle_ms)
                if not batch and len(values) >= at_least:
                    break
                values += [m for msgs in batch.values() for m in msgs]
            return values
        finally:
            await consumer.stop()

    return asyncio.run(read())
