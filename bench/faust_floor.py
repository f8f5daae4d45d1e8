"""Faust's floor: the rate at which faust-streaming alone hands messages to one agent.

A Faust app whose one agent reads the worker's input topics (``take_events`` of 4,000 events
within 0.5 s, the worker's stream buffer) and only counts: no decoding, no state, no output.
This is Faust's per-message floor, which the device agent had before issue 19, reported by
bench/stream.py beside the raw aiokafka consumer, in the same run. With
``FOREWARN_FLOOR_RUNS=1`` the app has the worker's transport (streams/transport.py) and telemetry
comes as runs, one event per partition and fetch: the floor of today's device agent.

Run by bench/stream.py as ``python -m bench.faust_floor worker -l warn`` with
``FOREWARN_FLOOR_BOOTSTRAP``, ``FOREWARN_FLOOR_GROUP``, ``FOREWARN_FLOOR_TOTAL`` (messages to
count) and ``FOREWARN_FLOOR_OUT`` (a file that receives the rate as JSON) set, and
``FOREWARN_FLOOR_DATADIR`` (Faust's data folder; a temporary one if unset).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import faust

from forewarn.events import INPUT_TOPICS, DeviceTelemetry
from streams.app import STREAM_BUFFER
from streams.transport import install, runs_of

BATCH, BATCH_WITHIN_S = 4000, 0.5
RUNS = os.environ.get("FOREWARN_FLOOR_RUNS") == "1"

TOTAL = int(os.environ.get("FOREWARN_FLOOR_TOTAL", "0"))
OUT = Path(os.environ.get("FOREWARN_FLOOR_OUT", "faust-floor.json"))

app = faust.App(
    os.environ.get("FOREWARN_FLOOR_GROUP", "faust-floor"),
    broker=f"kafka://{os.environ.get('FOREWARN_FLOOR_BOOTSTRAP', 'localhost:9092')}",
    store="memory://",
    key_serializer="raw",
    value_serializer="raw",
    consumer_auto_offset_reset="earliest",
    stream_buffer_maxsize=STREAM_BUFFER,
    web_enabled=False,
    # Faust's default is a folder in the current directory; the bench gives it its own.
    datadir=os.environ.get("FOREWARN_FLOOR_DATADIR", tempfile.mkdtemp(prefix="faust-floor-")),
)
if RUNS:
    install(app, batched_topics={DeviceTelemetry.topic})
inputs = app.topic(*INPUT_TOPICS, internal=False)


@app.agent(inputs)
async def count(stream):  # type: ignore[no-untyped-def]
    seen, started = 0, 0.0
    async for batch in stream.take_events(BATCH, within=BATCH_WITHIN_S):
        started = started or time.perf_counter()
        seen += sum(1 for _ in runs_of(e.message for e in batch))
        if seen >= TOTAL:
            rate = seen / (time.perf_counter() - started)
            OUT.write_text(json.dumps({"events": seen, "events_per_s": rate}))
            # Measured; a clean shutdown of the app would only add seconds to the bench.
            os._exit(0)


if __name__ == "__main__":
    app.main()
