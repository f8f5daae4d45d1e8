"""Reading a topic back in tests."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer


def read_topic(bootstrap: str, topic: str, idle_ms: int = 3000) -> list[bytes]:
    """Every message value of ``topic`` from the beginning, until it stays quiet ``idle_ms``."""

    async def read() -> list[bytes]:
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await consumer.start()
        try:
            values: list[bytes] = []
            while batch := await consumer.getmany(timeout_ms=idle_ms):
                values += [m.value for msgs in batch.values() for m in msgs]
            return values
        finally:
            await consumer.stop()

    return asyncio.run(read())
