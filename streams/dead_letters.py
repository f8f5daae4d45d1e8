"""Dead letters and the worker's counters, shared by every agent.

Counters are written every few seconds (and at shutdown) to
``<home>/workers/<host>-<pid>.json``, so operators, the demo and tests can read what a worker
refused and why without attaching to it.
"""

from __future__ import annotations

import base64
import json
import os
import socket
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from forewarn.events import DeadLetter, encode
from streams.app import app, dead_letters_topic, settings

counters: Counter[str] = Counter()
#: Non-numeric facts about the worker, written beside the counters (e.g. the churn model).
status: dict[str, str] = {}
COUNTERS_FILE = settings.home / "workers" / f"{socket.gethostname()}-{os.getpid()}.json"


def dead_letter(
    topic: str, partition: int, offset: int, raw: bytes | None, reason: str
) -> DeadLetter:
    """The dead-letter record of one bad message: raw bytes kept, reason stated."""
    return DeadLetter(
        event_id=f"dlq-{topic}-{partition}-{offset}",
        event_time=datetime.now(UTC),
        source_topic=topic,
        source_partition=partition,
        source_offset=offset,
        reason=reason[:2000],
        raw=base64.b64encode(raw or b"").decode(),
    )


async def send_dead_letter(letter: DeadLetter, kind: str) -> None:
    """Publish ``letter`` and count it under ``dead_letters.<kind>``."""
    await dead_letters_topic.send(key=letter.source_topic.encode(), value=encode(letter))
    counters[f"dead_letters.{kind}"] += 1


def write_counters(path: Path = COUNTERS_FILE) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    body = {"at": datetime.now(UTC).isoformat(), **counters, **status}
    tmp.write_text(json.dumps(body, indent=1))
    os.replace(tmp, path)


@app.timer(interval=5.0)
async def publish_counters() -> None:
    write_counters()


@app.on_before_shutdown.connect
async def final_counters(sender, **kwargs) -> None:  # type: ignore[no-untyped-def]
    write_counters()
