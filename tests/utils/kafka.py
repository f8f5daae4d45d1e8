"""Reading a topic back in tests."""

from __future__ import annotations

import asyncio
import time

from aiokafka import AIOKafkaConsumer


def read_topic(
    bootstrap: str, topic: str, *, at_least: int = 0, timeout: float = 30.0, idle_ms: int = 2000
) -> list[bytes]:
    """Every message value of ``topic`` from the beginning: waits up to ``timeout`` seconds
    for ``at_least`` messages, then until the topic stays quiet for ``idle_ms`` (so a test
    also sees messages it did not expect)."""

    async def read() -> list[bytes]:
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await consumer.start()
        deadline = time.monotonic() + timeout
        try:
            values: list[bytes] = []
            while time.monotonic() < deadline:
                batch = await consumer.getmany(timeout_ms=idle_ms)
                if not batch and len(values) >= at_least:
                    break
                values += [m.value for msgs in batch.values() for m in msgs]
            return values
        finally:
            await consumer.stop()

    return asyncio.run(read())
