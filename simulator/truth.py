"""Ground truth of a simulated run: what was injected, so detection can be scored."""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, fields
from datetime import datetime
from pathlib import Path
from typing import Any

from simulator.contacts import contact_of
from simulator.world import Benign, Churn, Fault, World


def _cell(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _write_csv(path: Path, rows: list[Any], row_type: type) -> None:
    names = [f.name for f in fields(row_type)]
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=names)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _cell(v) for k, v in asdict(row).items()})


def write_truth(world: World, folder: Path, params: dict[str, Any]) -> dict[str, Any]:
    """Write ``faults.csv``, ``churns.csv``, ``benign.csv``, ``customers.csv`` (routing and
    contact details, as a CRM export has them) and ``summary.json`` to ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    _write_csv(folder / "faults.csv", world.faults, Fault)
    _write_csv(folder / "churns.csv", world.churns, Churn)
    _write_csv(folder / "benign.csv", world.benign, Benign)
    with (folder / "customers.csv").open("w", newline="") as fh:
        columns = ["customer_id", "territory", "preferred_channel"]
        writer = csv.DictWriter(fh, [*columns, "name", "phone", "email", "address"])
        writer.writeheader()
        for c in world.customers:
            writer.writerow(
                {
                    "customer_id": c.customer_id,
                    "territory": c.territory,
                    "preferred_channel": str(c.channel),
                    **contact_of(c.customer_id, c.territory),
                }
            )
    summary = {
        "params": params,
        "start": world.start.isoformat(),
        "end": world.end.isoformat(),
        "customers": len(world.customers),
        "devices": len(world.devices),
        "faults": len(world.faults),
        "churns": len(world.churns),
        "benign": {
            k: sum(b.kind == k for b in world.benign)
            for k in (
                "maintenance",
                "firmware_update",
                "glitch",
                "excursion",
                "maintenance_unmarked",
            )
            if k in ("maintenance", "firmware_update", "glitch") or world.hard
        },
    }
    (folder / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def read_faults(folder: Path) -> list[Fault]:
    """Read ``faults.csv`` back (times as aware datetimes)."""
    with (folder / "faults.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    time_fields = {"onset_time", "failure_time", "complaint_time", "repair_time"}
    return [
        Fault(
            **{
                k: datetime.fromisoformat(v)
                if k in time_fields
                else (
                    float(v) if k == "magnitude" else (v == "True" if k == "precursor_codes" else v)
                )
                for k, v in row.items()
            }
        )
        for row in rows
    ]


def read_churns(folder: Path) -> list[Churn]:
    """Read ``churns.csv`` back (times as aware datetimes)."""
    with (folder / "churns.csv").open() as fh:
        return [
            Churn(
                customer_id=r["customer_id"],
                cause=r["cause"],
                onset_time=datetime.fromisoformat(r["onset_time"]),
                churn_time=datetime.fromisoformat(r["churn_time"]),
            )
            for r in csv.DictReader(fh)
        ]
