"""A deterministic world of customers and devices, with faults and churn to catch.

>>> from datetime import datetime, UTC
>>> world = build_world(n_customers=20, days=10, start=datetime(2026, 1, 5, tzinfo=UTC), seed=1)
>>> events = list(world_events(world))
>>> all(a.event_time <= b.event_time for a, b in zip(events, events[1:]))
True
"""

from simulator.render import world_events
from simulator.truth import read_churns, read_faults, write_truth
from simulator.world import Benign, Churn, Fault, World, build_world

__all__ = [
    "Benign",
    "Churn",
    "Fault",
    "World",
    "build_world",
    "read_churns",
    "read_faults",
    "world_events",
    "write_truth",
]
