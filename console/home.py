"""One home for every command: the running stack's state file, ``<home>/stack.json``.

Whatever starts a long-running part of the local stack (the demo's broker, worker and outreach
service, ``forewarn airflow``) records it here: what runs, its pid, port and log. Every other
command reads the file to find the stack (``forewarn status``, ``forewarn stop``, the CLI's
default Kafka address) and to refuse what would break it (a second demo, deleting a folder a
running process uses).

A pid alone can be reused by an unrelated process after a crash, so each entry also keeps the
process's start time (``/proc/<pid>/stat``, field 22); an entry whose process is gone, or whose
pid now belongs to another process, is stale and is ignored (``forewarn status`` says so).

>>> import tempfile
>>> home = Path(tempfile.mkdtemp())
>>> record(home, "worker", pid=os.getpid(), log=str(home / "worker.log"))["worker"]["pid"] > 0
True
>>> sorted(running(home))
['worker']
>>> forget(home, "worker"); read(home)
{}
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

STATE_FILE = "stack.json"
#: The order ``stop`` takes things down: users' doors first, the broker last (the worker
#: commits its offsets to it while it stops).
STOP_ORDER = ("airflow", "outreach", "worker", "kafka")


def state_path(home: Path) -> Path:
    return Path(home) / STATE_FILE


def started_at(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    return stat.rsplit(")", 1)[1].split()[19]


def alive(entry: dict[str, Any]) -> bool:
    """Whether the process an entry names still runs (and is the same process)."""
    pid = entry.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    start = started_at(pid)
    if start is None:
        return False
    if _zombie(pid):
        return False
    return entry.get("started") in (None, start)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


@contextlib.contextmanager
def _locked(home: Path) -> Iterator[Path]:
    """Read-modify-write of the state file, one process at a time."""
    path = state_path(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    with (path.parent / ".stack.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield path
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def read(home: Path) -> dict[str, dict[str, Any]]:
    """Every recorded part of the stack, alive or not ({} without a state file)."""
    try:
        data = json.loads(state_path(home).read_text())
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in data.items() if isinstance(v, dict)}


def _write(path: Path, state: dict[str, dict[str, Any]]) -> None:
    if not state:
        path.unlink(missing_ok=True)
        return
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    tmp.replace(path)


def record(home: Path, part: str, *, pid: int, **fields: Any) -> dict[str, dict[str, Any]]:
    """Note that ``part`` runs as ``pid`` (with its url, port, log, ...); returns the state."""
    with _locked(home) as path:
        state = read(home)
        state[part] = {
            "pid": pid,
            "started": started_at(pid),
            "since": datetime.now(UTC).isoformat(timespec="seconds"),
            **fields,
        }
        _write(path, state)
        return state


def forget(home: Path, *parts: str) -> None:
    """Drop entries (a part that stopped)."""
    with _locked(home) as path:
        state = read(home)
        for part in parts:
            state.pop(part, None)
        _write(path, state)


def running(home: Path) -> dict[str, dict[str, Any]]:
    """The recorded parts whose process still runs."""
    return {part: entry for part, entry in read(home).items() if alive(entry)}


def stale(home: Path) -> list[str]:
    """Recorded parts whose process is gone (a killed stack); ``clean_stale`` drops them."""
    return [part for part, entry in read(home).items() if not alive(entry)]


def clean_stale(home: Path) -> list[str]:
    gone = stale(home)
    if gone:
        forget(home, *gone)
    return gone


def stop_pid(pid: int, timeout: float = 60.0) -> None:
    """SIGTERM the process group ``pid`` leads (our children start their own), then SIGKILL
    after ``timeout``."""
    try:
        # Our children lead their own group (their own children go with them); a command
        # started in a terminal (`make outreach`) shares the shell's group: only itself.
        leader = os.getpgid(pid) == pid
    except ProcessLookupError:
        return
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
        try:
            if leader:
                os.killpg(pid, sig)
            else:
                os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if started_at(pid) is None or _zombie(pid):
                return
            time.sleep(0.2)


def stop(home: Path, *, say=print) -> list[str]:  # type: ignore[no-untyped-def]
    """Stop every running part of the stack in ``STOP_ORDER``; returns what was stopped."""
    state = read(home)
    stopped = []
    for part in sorted(state, key=lambda p: STOP_ORDER.index(p) if p in STOP_ORDER else -1):
        entry = state[part]
        if alive(entry):
            say(f"stopping {part} (pid {entry['pid']}) ...")
            stop_pid(entry["pid"])
            stopped.append(part)
        forget(home, part)
    return stopped


class StackRunning(RuntimeError):
    """Another stack runs from this home: the message names it and the ways out."""


def refuse_if_running(home: Path, doing: str) -> None:
    """Raise :class:`StackRunning` if any recorded part of ``home``'s stack runs, or a broker
    or worker of it runs without a record (started by hand)."""
    parts = running(home)
    broker_pid = _pid_file(Path(home) / "kafka" / "broker.pid")
    if broker_pid and not any(e["pid"] == broker_pid for e in parts.values()):
        parts["kafka"] = {"pid": broker_pid}
    for counters in (Path(home) / "workers").glob("*.json"):
        pid = counters.stem.rsplit("-", 1)[-1]
        known = any(e["pid"] == int(pid) for e in parts.values()) if pid.isdigit() else True
        if not known and _is_worker(int(pid)):
            parts.setdefault("worker", {"pid": int(pid)})
    if parts:
        what = ", ".join(f"{part} (pid {entry['pid']})" for part, entry in sorted(parts.items()))
        raise StackRunning(
            f"a stack already runs from {home}: {what}. {doing} would pull the folder from "
            f"under it. Stop it first with `forewarn --home {home} stop` (or `make stop`), "
            "or pass --restart to stop it and go on"
        )


def _pid_file(path: Path) -> int | None:
    try:
        pid = int(path.read_text())
    except (OSError, ValueError):
        return None
    return pid if started_at(pid) is not None and not _zombie(pid) else None


def _is_worker(pid: int) -> bool:
    """A live Faust worker of ours (a counters file's pid may since belong to another program)."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"streams" in command and not _zombie(pid)


def broker_on_port(port: int) -> dict[str, Any] | None:
    """A local Forewarn broker (any home) whose client or controller port is ``port``: its
    pid, its folder and the home it belongs to (``<home>/kafka``), found through /proc."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            args = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if "kafka.Kafka" not in args:
            continue
        config = Path(args[-1]) if args[-1] else Path(args[-2])
        try:
            text = config.read_text()
        except OSError:
            continue
        if f"127.0.0.1:{port}," in text or f"127.0.0.1:{port}\n" in text:
            return {
                "pid": int(proc.name),
                "home": str(config.parent),
                "forewarn_home": str(config.parent.parent),
            }
    return None
