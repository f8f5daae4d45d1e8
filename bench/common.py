"""What every benchmark shares: the result record, timing, peak memory, medians.

A result compares Forewarn with a baseline measured in the same run (same machine, same
moment), so the ratio means something even on a noisy machine.
"""

from __future__ import annotations

import os
import platform
import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FOREWARN_SHARED_DIR", ROOT.parent / "shared"))


class MissingData(Exception):
    """Reference data a benchmark measures on is not here (a user's clone has no
    ``../shared``): the benchmark is skipped, with this as the reason."""


def reference_data(*parts: str) -> Path:
    """The path of reference data under ``SHARED/data``; :class:`MissingData` if absent."""
    path = SHARED.joinpath("data", *parts)
    if not path.exists():
        raise MissingData(
            f"reference data not found at {path} (set FOREWARN_SHARED_DIR to the folder "
            "holding data/)"
        )
    return path


@dataclass
class Result:
    """One benchmark's figures against its baseline's.

    ``ratio`` is ours / baseline for the headline figure (``higher_is_better`` says which way
    is good); ``goal`` states the target and ``goal_met`` whether this run reached it.
    """

    name: str
    figures: dict[str, float]
    units: dict[str, str]
    baseline_name: str
    baseline: dict[str, float]
    ratio: float
    ratio_of: str
    goal: str
    goal_met: bool
    runs: int = 1
    notes: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    """``fn()`` and its wall time in seconds."""
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def median_of(runs: int, fn: Callable[[], dict[str, float]]) -> dict[str, float]:
    """Run ``fn`` ``runs`` times; the median of every figure it returns."""
    samples = [fn() for _ in range(runs)]
    return {k: statistics.median(s[k] for s in samples) for k in samples[0]}


def peak_rss_mb(pid: int | None = None) -> float:
    """Peak resident memory in MiB of ``pid`` (VmHWM), or of this process."""
    if pid is not None:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError(f"no VmHWM for pid {pid}")
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine() -> dict[str, Any]:
    cpu = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kb = int(line.split()[1])
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kb / 1024**2, 1),
        "python": platform.python_version(),
        "system": platform.platform(),
    }
