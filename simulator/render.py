"""Render a planned :class:`~simulator.world.World` into events, in event-time order.

Each device and customer is rendered by its own generator from its own RNG, and
:func:`world_events` merges them lazily (``heapq.merge``), so memory stays flat however long
the run; the output is the same for the same seed whatever the consumer does with it.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterator
from datetime import datetime, timedelta

import numpy as np

from forewarn.events import Channel, DeviceTelemetry, Event, Order, Ticket
from simulator.world import (
    DEVICE_TYPES,
    ORDER_CHANNELS,
    PRECURSOR_CODES,
    Customer,
    Device,
    World,
)

BENIGN_WARNING_RATE = 0.003  # W10 per reading: background warnings that mean nothing
HOUR_S = 3600.0


def _sigma(device: Device, name: str) -> float:
    spec = next(m for m in DEVICE_TYPES[device.device_type] if m.name == name)
    return spec.sigma * abs(device.levels[name] / spec.level)


def device_telemetry(device: Device, world: World) -> Iterator[DeviceTelemetry]:
    """Readings of one device every ``world.telemetry_every``, with its faults and surprises."""
    rng = np.random.default_rng(device.rng_seed)
    step = device.every or world.telemetry_every
    n = int((world.end - world.start) / step)
    hours = np.arange(n) * (step.total_seconds() / HOUR_S)
    start_hour = world.start.hour + world.start.minute / 60
    hour_of_day = (start_hour + hours) % 24
    weekday = (world.start.weekday() + (start_hour + hours) // 24) % 7
    values: dict[str, np.ndarray] = {}
    for spec in DEVICE_TYPES[device.device_type]:
        sigma = _sigma(device, spec.name)
        daily = spec.daily_amplitude * sigma * np.sin(2 * math.pi * (hour_of_day - 9) / 24)
        weekend = spec.weekend_shift * sigma * (weekday >= 5)
        # Student-t noise: real sensors have heavier tails than a normal distribution.
        noise = rng.standard_t(5, n) * sigma * 0.8
        values[spec.name] = device.levels[spec.name] + daily + weekend + noise
    codes: list[list[str]] = [["W10"] if u < BENIGN_WARNING_RATE else [] for u in rng.random(n)]
    hard = np.random.default_rng([device.rng_seed, 16])  # a hard world's draws, apart
    if device.counts:
        # Starts of the unit per interval: mostly zeros, never a fault signal on its own.
        values["starts_count"] = hard.poisson(0.4, n).astype(float)
    mode = ["normal"] * n
    firmware = ["1.0.0"] * n
    alive = np.ones(n, dtype=bool)

    def index(t: datetime) -> int:
        return min(n, max(0, math.ceil((t - world.start) / step)))

    for b in device.benign:
        i = index(b.time)
        if i >= n:
            continue
        if b.kind == "maintenance":
            j = min(n, i + max(1, round(int(b.detail.rstrip("h")) * HOUR_S / step.total_seconds())))
            mode[i:j] = ["maintenance"] * (j - i)
            codes[i] = [*codes[i], "M01"]
            for name, v in values.items():  # a technician on site: readings are all over
                if name in device.levels:
                    v[i:j] += rng.normal(0, 6, j - i) * _sigma(device, name)
        elif b.kind == "firmware_update":
            firmware[i:] = ["1.1.0"] * (n - i)
            values[b.metric][i:] += float(b.detail) * _sigma(device, b.metric)
        elif b.kind == "glitch":
            values[b.metric][i] += float(b.detail) * _sigma(device, b.metric)
        elif b.kind == "maintenance_unmarked":  # on site, but the readings do not say so
            j = min(n, i + max(1, round(int(b.detail.rstrip("h")) * HOUR_S / step.total_seconds())))
            for name, v in values.items():
                if name in device.levels:
                    v[i:j] += hard.normal(0, 6, j - i) * _sigma(device, name)
        elif b.kind == "excursion":  # up and back down over the hours given, no failure
            size, hours = b.detail.rstrip("h").split("/")
            j = min(n, i + max(2, round(float(hours) * HOUR_S / step.total_seconds())))
            shape = np.sin(np.linspace(0, math.pi, j - i))
            values[b.metric][i:j] += float(size) * _sigma(device, b.metric) * shape

    fault = device.fault
    if fault is not None:
        i0, i1, i2 = index(fault.onset_time), index(fault.failure_time), index(fault.repair_time)
        spec = next(m for m in DEVICE_TYPES[device.device_type] if m.name == fault.metric)
        push = spec.direction * _sigma(device, fault.metric)
        frac = np.clip((np.arange(i0, i1) - i0) / max(1, i1 - i0), 0, 1)
        code = PRECURSOR_CODES[fault.kind]
        if fault.kind == "drift":
            values[fault.metric][i0:i1] += push * fault.magnitude * frac**1.5
            precursor = rng.random(len(frac)) < 0.01 + 0.2 * frac
        elif fault.kind == "spikes":
            spikes = rng.random(len(frac)) < 0.03 + 0.3 * frac
            size = fault.magnitude * rng.uniform(0.6, 1.0, len(frac))
            values[fault.metric][i0:i1] += np.where(spikes, push * size, 0.0)
            precursor = spikes & (rng.random(len(frac)) < 0.5)
        else:  # sudden: hours of warning at most
            values[fault.metric][i0:i1] += push * 2.0
            precursor = rng.random(len(frac)) < 0.5
        for k in np.flatnonzero(precursor) if fault.precursor_codes else ():
            codes[i0 + k] = [*codes[i0 + k], code]
        if i1 < n:
            codes[i1] = [*codes[i1], "F01"]  # last words, then silence until the repair
            alive[i1 + 1 : i2] = False

    names = list(values)
    columns = [values[name].round(3).tolist() for name in names]
    for i in np.flatnonzero(alive).tolist():
        jitter = timedelta(seconds=int(rng.integers(0, 30)))
        yield DeviceTelemetry.model_construct(
            event_id=f"{device.device_id}-{i}",
            event_time=world.start + i * step + jitter,
            device_id=device.device_id,
            customer_id=device.customer_id,
            device_type=device.device_type,
            metrics={name: col[i] for name, col in zip(names, columns, strict=True)},
            error_codes=codes[i],
            mode=mode[i],
            firmware=firmware[i],
        )


_QUESTIONS = (
    "How do I change my billing address?",
    "When is my next service due?",
    "Can I add a second user to the app?",
    "Where is my invoice?",
)
_COMPLAINTS = {
    "fault": "My {device} stopped working this morning. Nobody warned us.",
    "fault_again": "Still not working, this is the second time I call about the {device}.",
    "delivery": "My order is late again.",
    "complaint": "The replacement part was wrong and nobody calls back.",
    "cancellation": "Please cancel my contract.",
}


class _Customer:
    """Renders one customer's orders and tickets (a small list, sorted at the end)."""

    def __init__(self, customer: Customer, world: World) -> None:
        self.c = customer
        self.world = world
        self.rng = np.random.default_rng(customer.rng_seed)
        self.events: list[Event] = []
        self.tickets = 0

    def worse(self, t: datetime) -> bool:
        churn = self.c.churn
        return churn is not None and churn.cause == "service" and t >= churn.onset_time

    def gone(self, t: datetime) -> bool:
        return self.c.churn is not None and t >= self.c.churn.churn_time

    def render(self) -> list[Event]:
        self.orders()
        self.background_tickets()
        for device in self.c.devices:
            if device.fault is not None:
                self.fault_tickets(device)
        churn = self.c.churn
        if churn is not None and churn.cause == "service" and churn.onset_time < self.world.end:
            # A worsening relationship starts with an incident the customer complains about.
            self.ticket(
                churn.onset_time + timedelta(hours=float(self.rng.uniform(1, 8))),
                "complaint",
                contacts=2,
                bad=True,
            )
        if churn is not None and churn.churn_time < self.world.end and self.rng.random() < 0.6:
            self.ticket(churn.churn_time, "cancellation", contacts=1, bad=True)
        self.events.sort(key=lambda e: e.event_time)
        return self.events

    def orders(self) -> None:
        rng, c = self.rng, self.c
        t = self.world.start + timedelta(days=float(rng.uniform(0, c.order_every_days)))
        n = 0
        while t < self.world.end and not self.gone(t):
            n += 1
            worse = self.worse(t)
            order_id = f"{c.customer_id}-O{n:04d}"
            amount = round(c.basket_eur * float(rng.lognormal(0, 0.3)), 2)
            channel = ORDER_CHANNELS[int(rng.integers(len(ORDER_CHANNELS)))]
            promised = t + timedelta(days=3)
            p_late, p_cancel, p_return = (0.30, 0.15, 0.20) if worse else (0.05, 0.03, 0.04)

            def emit(
                status: str,
                at: datetime,
                _id: str = order_id,
                _amount: float = amount,
                _channel: Channel = channel,
                _promised: datetime = promised,
            ) -> None:
                self.events.append(
                    Order.model_construct(
                        event_id=f"{_id}-{status}",
                        event_time=at,
                        order_id=_id,
                        customer_id=c.customer_id,
                        channel=_channel,
                        status=status,
                        amount=_amount,
                        currency="EUR",
                        promised_time=_promised,
                    )
                )

            emit("placed", t)
            u = rng.random()
            if u < p_cancel:
                emit("cancelled", t + timedelta(hours=float(rng.uniform(2, 40))))
            else:
                emit("shipped", t + timedelta(hours=float(rng.uniform(12, 30))))
                if u < p_cancel + p_late:
                    emit("late", promised)
                    delivered = promised + timedelta(days=float(rng.uniform(1, 4)))
                    if rng.random() < (0.8 if worse else 0.4):
                        self.ticket(
                            promised + timedelta(hours=float(rng.uniform(1, 20))),
                            "delivery",
                            contacts=1 + int(worse) * int(rng.integers(1, 3)),
                            bad=worse,
                        )
                else:
                    delivered = t + timedelta(days=float(rng.uniform(1.5, 3)))
                emit("delivered", delivered)
                if rng.random() < p_return:
                    returned = delivered + timedelta(days=float(rng.uniform(1, 6)))
                    emit("returned", returned)
                    if worse and rng.random() < 0.6:
                        self.ticket(
                            returned, "complaint", contacts=int(rng.integers(2, 4)), bad=True
                        )
            gap = float(rng.exponential(c.order_every_days)) * (1.8 if worse else 1.0)
            t += timedelta(days=max(0.5, gap))

    def background_tickets(self) -> None:
        rng = self.rng
        t = self.world.start
        while True:
            worse = self.worse(t)
            t += timedelta(days=float(rng.exponential(3 if worse else 45)))
            if t >= self.world.end or self.gone(t):
                return
            worse = self.worse(t)
            category = (
                "complaint"
                if worse and rng.random() < 0.5
                else str(rng.choice(["question", "billing"]))
            )
            contacts = int(rng.integers(2, 5)) if worse else 1 + int(rng.random() < 0.25)
            self.ticket(t, category, contacts=contacts, bad=worse)

    def fault_tickets(self, device: Device) -> None:
        fault = device.fault
        assert fault is not None
        if self.gone(fault.complaint_time):
            return
        label = device.device_type.replace("_", " ")
        # Customers who will leave over the fault show it: more calls, worse answers, and a
        # complaint after the repair. The others grumble once and move on.
        leaving = self.c.churn is not None and self.c.churn.cause == "device_fault"
        self.ticket(
            fault.complaint_time,
            "fault",
            contacts=4 if leaving else 2,
            bad=leaving,
            device_id=device.device_id,
            text=_COMPLAINTS["fault"].format(device=label),
            resolved_at=fault.repair_time,
            follow_up=_COMPLAINTS["fault_again"].format(device=label),
        )
        if leaving:
            after = fault.repair_time + timedelta(days=float(self.rng.uniform(1, 4)))
            self.ticket(after, "complaint", contacts=2, bad=True, device_id=device.device_id)

    def ticket(
        self,
        t: datetime,
        category: str,
        *,
        contacts: int,
        bad: bool,
        device_id: str | None = None,
        text: str | None = None,
        resolved_at: datetime | None = None,
        follow_up: str | None = None,
    ) -> None:
        rng, c = self.rng, self.c
        self.tickets += 1
        ticket_id = f"{c.customer_id}-T{self.tickets:04d}"
        channel = (
            c.channel
            if rng.random() < 0.7
            else Channel(str(rng.choice(["phone", "email", "chat", "social", "store"])))
        )
        if text is None:
            text = _COMPLAINTS.get(category) or str(rng.choice(_QUESTIONS))
        end = resolved_at or t + timedelta(hours=float(rng.uniform(0.2, 6)) * contacts)
        times = [t + (end - t) * k / max(1, contacts - 1) for k in range(contacts)]
        for k, at in enumerate(times, start=1):
            if at >= self.world.end:
                return
            last = k == contacts
            # Unhappy customers answer surveys more often than content ones.
            survey = last and rng.random() < (0.7 if bad else 0.45)
            csat_p = [0.35, 0.35, 0.2, 0.07, 0.03] if bad else [0.03, 0.05, 0.12, 0.4, 0.4]
            self.events.append(
                Ticket.model_construct(
                    event_id=f"{ticket_id}-{k}",
                    event_time=at,
                    ticket_id=ticket_id,
                    customer_id=c.customer_id,
                    device_id=device_id,
                    channel=channel,
                    category=category,
                    status="resolved" if last else ("opened" if k == 1 else "updated"),
                    contact_number=k,
                    text=text if k == 1 else (follow_up or text),
                    csat=int(rng.choice(5, p=csat_p)) + 1 if survey else None,
                    nps=int(rng.integers(0, 7) if bad else rng.integers(6, 11)) if survey else None,
                    ces_agree=bool(rng.random() < (0.3 if bad else 0.8)) if survey else None,
                    first_contact_resolution=(contacts == 1) if last else None,
                )
            )


def customer_events(customer: Customer, world: World) -> list[Event]:
    """One customer's orders and tickets, sorted by event time."""
    return _Customer(customer, world).render()


def world_events(world: World) -> Iterator[Event]:
    """Every event of the world, merged lazily in event-time order."""
    streams: list[Iterator[Event]] = [device_telemetry(d, world) for d in world.devices]
    streams += [iter(customer_events(c, world)) for c in world.customers]
    return heapq.merge(*streams, key=lambda e: e.event_time)
