"""The simulated world: customers, their devices, and the plan of what will happen to them.

Everything random is drawn here, up front, from one seed: which devices degrade and how, which
customers' experience worsens, when benign surprises happen. The plan *is* the ground truth;
:mod:`simulator.events` only renders it into events. Each entity gets its own RNG
spawned from the seed, so adding a customer does not change what happens to the others.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

import numpy as np

from forewarn.events import Channel

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


@dataclass(frozen=True)
class MetricSpec:
    """A metric's typical level and noise, and how a degradation pushes it (``direction``)."""

    name: str
    level: float
    sigma: float
    daily_amplitude: float  # in sigmas; peak in the afternoon
    weekend_shift: float  # in sigmas
    direction: int  # +1: faults push it up, -1: down


DEVICE_TYPES: dict[str, tuple[MetricSpec, ...]] = {
    "heat_pump": (
        MetricSpec("vibration_mm_s", 2.0, 0.25, 1.5, 0.5, +1),
        MetricSpec("outlet_temp_c", 45.0, 1.2, 2.0, 0.3, -1),
        MetricSpec("current_a", 6.0, 0.4, 2.5, 0.8, +1),
    ),
    "alarm_panel": (
        MetricSpec("battery_v", 12.6, 0.06, 0.5, 0.0, -1),
        MetricSpec("signal_dbm", -60.0, 2.5, 0.8, 0.2, -1),
        MetricSpec("sensor_noise_mv", 3.0, 0.4, 1.0, 0.2, +1),
    ),
    "water_heater": (
        MetricSpec("tank_temp_c", 60.0, 1.0, 2.5, 0.5, -1),
        MetricSpec("pressure_bar", 3.0, 0.08, 1.0, 0.2, +1),
        MetricSpec("current_a", 9.0, 0.5, 3.0, 1.0, +1),
    ),
}

FAULT_KINDS = ("drift", "spikes", "sudden")
# Error codes: E* precede faults, F01 marks a failure, W* and M* are benign (warnings, maintenance).
PRECURSOR_CODES = {"drift": "E42", "spikes": "E17", "sudden": "E99"}
TERRITORIES = ("north", "south", "east", "west")
PERSONAL_CHANNELS = (Channel.PHONE, Channel.EMAIL, Channel.CHAT, Channel.SOCIAL, Channel.STORE)
ORDER_CHANNELS = (Channel.WEB, Channel.APP, Channel.PHONE, Channel.STORE)


@dataclass(frozen=True)
class Fault:
    """An injected degradation of one device metric, ending in a failure.

    ``complaint_time`` is when the customer would call about it if nobody acted first;
    ``repair_time`` when a technician fixed it after that call.
    """

    device_id: str
    customer_id: str
    kind: str
    metric: str
    onset_time: datetime
    failure_time: datetime
    complaint_time: datetime
    repair_time: datetime
    magnitude: float  # sigmas reached at failure (drift) or spike size (spikes)
    precursor_codes: bool = True  # False: the unit raises no E* code before it fails


@dataclass(frozen=True)
class Benign:
    """A surprise that is *not* a fault: maintenance, a firmware update, a single glitch, and
    in a hard world an excursion that recovers by itself or maintenance only in the records."""

    device_id: str
    kind: str  # maintenance | firmware_update | glitch | excursion | maintenance_unmarked
    time: datetime
    metric: str = ""
    detail: str = ""


@dataclass(frozen=True)
class Churn:
    """A customer whose experience worsens from ``onset_time`` and who leaves at ``churn_time``."""

    customer_id: str
    cause: str  # service (late/cancelled/returned orders, repeated contacts) | device_fault
    onset_time: datetime
    churn_time: datetime


@dataclass
class Device:
    device_id: str
    customer_id: str
    device_type: str
    levels: dict[str, float]
    rng_seed: int
    fault: Fault | None = None
    benign: list[Benign] = field(default_factory=list)
    every: timedelta | None = None  # its own sampling interval (hard world), else the world's
    counts: bool = False  # reports a count-like metric, mostly zeros (hard world)


@dataclass
class Customer:
    customer_id: str
    territory: str
    channel: Channel
    order_every_days: float
    basket_eur: float
    devices: list[Device]
    rng_seed: int
    churn: Churn | None = None


@dataclass
class World:
    start: datetime
    end: datetime
    telemetry_every: timedelta
    customers: list[Customer]
    hard: bool = False

    @property
    def devices(self) -> list[Device]:
        return [d for c in self.customers for d in c.devices]

    @property
    def faults(self) -> list[Fault]:
        return [d.fault for d in self.devices if d.fault is not None]

    @property
    def churns(self) -> list[Churn]:
        return [c.churn for c in self.customers if c.churn is not None]

    @property
    def benign(self) -> list[Benign]:
        return [b for d in self.devices for b in d.benign]


def _at(start: datetime, rng: np.random.Generator, low_days: float, high_days: float) -> datetime:
    """A random time between ``start + low_days`` and ``start + high_days``, to the minute."""
    minutes = int(rng.uniform(low_days, high_days) * 24 * 60)
    return start + timedelta(minutes=minutes)


def build_world(
    *,
    n_customers: int,
    days: int,
    start: datetime,
    seed: int,
    telemetry_every: timedelta = HOUR,
    fault_rate: float = 0.08,
    churn_rate: float = 0.10,
    maintenance_rate: float = 0.10,
    firmware_rate: float = 0.20,
    hard: bool = False,
) -> World:
    """Draw the world and its plan. Rates are shares of devices/customers over the run.

    ``hard`` (issue 15) adds what real fleets have and the default world lacks, drawn from
    separate generators so the default world stays the same for the same seed: half the
    faults raise no precursor error codes; excursions (3-6 sigma for one to three days) that
    recover by themselves and never end in a failure, on 15% of devices; half of the
    maintenance visits only in the records, not in the readings' mode; sampling intervals of
    15 minutes to 2 hours per device; and a count-like metric (mostly zeros) on a third of the
    devices.
    """
    root = np.random.SeedSequence(seed)
    customer_seeds = root.spawn(n_customers)
    end = start + timedelta(days=days)
    customers = []
    device_no = 0
    for i, seq in enumerate(customer_seeds):
        rng = np.random.default_rng(seq)
        cid = f"C{i + 1:05d}"
        customer = Customer(
            customer_id=cid,
            territory=TERRITORIES[int(rng.integers(len(TERRITORIES)))],
            channel=PERSONAL_CHANNELS[int(rng.choice(5, p=[0.35, 0.3, 0.2, 0.05, 0.1]))],
            order_every_days=float(rng.gamma(2.0, 8.0)) + 3.0,
            basket_eur=round(float(rng.lognormal(4.0, 0.6)), 2),
            devices=[],
            rng_seed=int(rng.integers(2**31)),
        )
        for _ in range(1 + int(rng.random() < 0.35)):
            device_no += 1
            dtype = list(DEVICE_TYPES)[int(rng.integers(len(DEVICE_TYPES)))]
            device = Device(
                device_id=f"D{device_no:05d}",
                customer_id=cid,
                device_type=dtype,
                # Unit-to-unit variation: a fixed threshold for all units of a type fits none.
                levels={
                    m.name: m.level * float(rng.lognormal(0, 0.08)) for m in DEVICE_TYPES[dtype]
                },
                rng_seed=int(rng.integers(2**31)),
            )
            _plan_device(device, rng, start, days, fault_rate, maintenance_rate, firmware_rate)
            if hard:
                _harden(device, start, days)
            customer.devices.append(device)
        _plan_churn(customer, rng, start, days, churn_rate)
        customers.append(customer)
    return World(
        start=start, end=end, telemetry_every=telemetry_every, customers=customers, hard=hard
    )


#: Sampling intervals of a hard world's devices, and their shares.
HARD_INTERVALS = ((timedelta(minutes=15), 0.2), (timedelta(minutes=30), 0.2), (HOUR, 0.4))
HARD_INTERVALS += ((2 * HOUR, 0.2),)


def _harden(device: Device, start: datetime, days: int) -> None:
    """What a hard world adds to a device's plan, from the device's own second generator."""
    rng = np.random.default_rng([device.rng_seed, 15])
    every, shares = zip(*HARD_INTERVALS, strict=True)
    device.every = every[int(rng.choice(len(every), p=shares))]
    device.counts = bool(rng.random() < 1 / 3)
    if device.fault is not None and rng.random() < 0.5:
        device.fault = replace(device.fault, precursor_codes=False)
    device.benign = [
        replace(b, kind="maintenance_unmarked")
        if b.kind == "maintenance" and rng.random() < 0.5
        else b
        for b in device.benign
    ]
    if rng.random() < 0.15 and days >= 6:
        spec = DEVICE_TYPES[device.device_type][int(rng.integers(3))]
        size = float(rng.uniform(3, 6) * rng.choice([-1, 1]))
        hours = float(rng.uniform(24, 72))
        device.benign.append(
            Benign(
                device.device_id,
                "excursion",
                _at(start, rng, 3, days - 3),
                metric=spec.name,
                detail=f"{size:+.2f}/{hours:.0f}h",
            )
        )


def _plan_device(
    device: Device,
    rng: np.random.Generator,
    start: datetime,
    days: int,
    fault_rate: float,
    maintenance_rate: float,
    firmware_rate: float,
) -> None:
    specs = DEVICE_TYPES[device.device_type]
    if rng.random() < fault_rate and days >= 8:
        kind = FAULT_KINDS[int(rng.choice(3, p=[0.45, 0.35, 0.20]))]
        spec = specs[int(rng.integers(len(specs)))]
        # Leave a few days of clean history for baselines to settle.
        onset = _at(start, rng, 3, max(3.5, days - 6))
        lead_days = {"drift": (3, 8), "spikes": (2, 6), "sudden": (0.1, 0.5)}[kind]
        failure = onset + timedelta(days=float(rng.uniform(*lead_days)))
        complaint = failure + timedelta(hours=float(rng.uniform(2, 30)))
        repair = complaint + timedelta(hours=float(rng.uniform(18, 72)))
        device.fault = Fault(
            device_id=device.device_id,
            customer_id=device.customer_id,
            kind=kind,
            metric=spec.name,
            onset_time=onset,
            failure_time=failure,
            complaint_time=complaint,
            repair_time=repair,
            magnitude=float(rng.uniform(6, 10)),
        )
    if rng.random() < maintenance_rate:
        device.benign.append(
            Benign(
                device.device_id,
                "maintenance",
                _at(start, rng, 1, days),
                detail=f"{int(rng.integers(2, 5))}h",
            )
        )
    if rng.random() < firmware_rate:
        spec = specs[int(rng.integers(len(specs)))]
        shift = float(rng.choice([-1, 1]) * rng.uniform(3, 5))
        device.benign.append(
            Benign(
                device.device_id,
                "firmware_update",
                _at(start, rng, 2, days),
                metric=spec.name,
                detail=f"{shift:+.2f}",
            )
        )
    # Single-reading sensor glitches, about one per device and two months.
    for _ in range(int(rng.poisson(0.015 * days))):
        spec = specs[int(rng.integers(len(specs)))]
        size = float(rng.choice([-1, 1]) * rng.uniform(8, 15))
        device.benign.append(
            Benign(
                device.device_id,
                "glitch",
                _at(start, rng, 0, days),
                metric=spec.name,
                detail=f"{size:+.1f}",
            )
        )


def _plan_churn(
    customer: Customer, rng: np.random.Generator, start: datetime, days: int, churn_rate: float
) -> None:
    faulty = [d.fault for d in customer.devices if d.fault is not None]
    if faulty and rng.random() < 0.35:
        # A failure the customer had to report themselves sours the relationship.
        onset = faulty[0].complaint_time
        customer.churn = Churn(
            customer.customer_id,
            "device_fault",
            onset,
            onset + timedelta(days=float(rng.uniform(7, 20))),
        )
    elif rng.random() < churn_rate:
        onset = _at(start, rng, 2, max(2.5, days - 8))
        customer.churn = Churn(
            customer.customer_id,
            "service",
            onset,
            onset + timedelta(days=float(rng.uniform(8, 22))),
        )
