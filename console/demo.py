"""``forewarn demo``: the whole product on embedded defaults, in one home, then a report.

1. a local Kafka broker (``<home>/kafka``);
2. a simulated world of ``history_days + days`` days: the history is backfilled straight to the
   lake (long enough for labelled churn cut-offs), the last ``days`` days are streamed through
   Kafka and one Faust worker (faults, risk and feedback tasks in the outreach store);
3. the nightly DAG in real Airflow for the last day (``airflow dags test``): quality gate,
   features, churn retraining against the champion, lifetime value, the at-risk list, KPIs;
   the promoted model is announced to the running worker, which loads it;
4. the outreach service (``<home>/outreach.db``) with today's lists, read through its API;
5. a report in ``<home>/demo/``: ``report.md``, ``report.json`` and ``report.html`` (which
   opens with a picture of what ran and the counts that flowed).

Everything lives under ``settings.home`` (``FOREWARN_HOME``), the same home every other
command uses; the running parts are recorded in ``<home>/stack.json`` (``console.home``), so
``forewarn status`` finds them and ``forewarn stop`` stops them, and a second demo refuses to
start on top of them.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from itertools import takewhile
from pathlib import Path
from typing import Any

from console import home as stack
from console.kafka.local import LocalKafka, port_free
from console.stack import OutreachProcess, WorkerProcess, wait_drained
from forewarn.events import Event
from forewarn.settings import Settings


def stream_window(days: int, now: datetime | None = None) -> tuple[datetime, datetime]:
    """``(start, end)`` of the streamed part of the demo: ``days`` days ending at the last
    full hour of ``now`` (the clock by default), so due dates and "overdue" are real (issue
    17); the backfilled history comes before ``start``.

    Examples
    --------
    >>> stream_window(30, datetime(2026, 11, 29, 15, 42, tzinfo=UTC))[1].isoformat()
    '2026-11-29T15:00:00+00:00'
    """
    now = now or datetime.now(UTC)
    end = now.replace(minute=0, second=0, microsecond=0)
    return end - timedelta(days=days), end


ROLES = ("technician", "dispatcher", "retention", "support", "admin")
#: What a fresh demo clears in its home; Airflow's database (``airflow/``: its generated admin
#: password, earlier runs) is kept, and nothing outside these.
DATA_PARTS = (
    "kafka",
    "lake",
    "nightly",
    "models",
    "workers",
    "demo",
    "outreach.db",
    "outreach.db-wal",
    "outreach.db-shm",
)


class DemoError(RuntimeError):
    """The demo cannot go on: the message says why and what to do."""


def _say(text: str) -> None:
    print(f"forewarn demo: {text}", flush=True)


def run_demo(
    settings: Settings,
    *,
    customers: int,
    days: int,
    seed: int,
    keep_running: bool,
    fresh: bool,
    outreach_port: int = 8088,
    history_days: int = 60,
    nightly: bool = True,
    restart: bool = False,
) -> dict[str, Any]:
    home = Path(settings.home)
    if restart:
        stopped = stack.stop(home, say=_say)
        if stopped:
            _say(f"stopped the running stack ({', '.join(stopped)})")
    stack.refuse_if_running(home, "A new demo")
    gone = stack.clean_stale(home)
    if gone:
        _say(f"forgot a stopped stack's state ({', '.join(gone)} no longer run)")
    broker = LocalKafka(home=home / "kafka", cache_dir=settings.cache_dir, port=settings.kafka_port)
    _check_ports(broker, outreach_port)
    if fresh:
        for part in DATA_PARTS:
            path = home / part
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
    demo = replace(settings, kafka_bootstrap=broker.bootstrap, group_id="forewarn-demo")
    folder = home / "demo"
    folder.mkdir(parents=True, exist_ok=True)
    started: list[Any] = []
    # Ctrl-C (and a plain `kill`) must stop this run and everything it started, wherever it
    # waits. asyncio.run's own SIGINT handler only cancels its task, and a Kafka client that
    # finishes its call anyway swallowed the interrupt: the demo went on streaming. A handler
    # of our own raises at once, and asyncio.run leaves it in place.
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        report = _run(
            demo,
            broker,
            folder,
            started,
            customers=customers,
            days=days,
            history_days=history_days,
            seed=seed,
            keep_running=keep_running,
            outreach_port=outreach_port,
            nightly=nightly,
        )
    except BaseException:
        # A failure or Ctrl-C: take down what this run started; nothing is left half-running
        # (a second Ctrl-C must not cut that short: each stop has its own time limit).
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)
        _say("stopping what this run started ...")
        for part in reversed(started):
            part.stop()
        stack.clean_stale(home)
        raise
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if not keep_running:
        for part in reversed(started):
            part.stop()
        stack.clean_stale(home)
    return report


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _check_ports(broker: LocalKafka, outreach_port: int) -> None:
    wanted = {
        broker.port: "Kafka (FOREWARN_KAFKA_BOOTSTRAP=127.0.0.1:<port>)",
        broker.port + 1: "Kafka's controller (the client port + 1)",
        outreach_port: "the outreach service (--outreach-port)",
    }
    busy = [f"{port} for {what}" for port, what in wanted.items() if not port_free(port)]
    if busy:
        raise DemoError(
            f"port {'; '.join(busy)} is in use by another program: stop it or choose another "
            "port (`forewarn status` shows whether it is one of ours)"
        )


class _Part:
    """A started part of the stack: how to stop it and forget it."""

    def __init__(self, home: Path, name: str, stop) -> None:  # type: ignore[no-untyped-def]
        self.home, self.name, self._stop = home, name, stop

    def stop(self) -> None:
        try:
            self._stop()
        finally:
            stack.forget(self.home, self.name)


def _run(
    demo: Settings,
    broker: LocalKafka,
    folder: Path,
    started: list[_Part],
    *,
    customers: int,
    days: int,
    history_days: int,
    seed: int,
    keep_running: bool,
    outreach_port: int,
    nightly: bool,
) -> dict[str, Any]:
    from forewarn.kafka.admin import ensure_topics
    from forewarn.progress import progress_bar
    from forewarn.publish import produce, write_lake
    from simulator import build_world, world_events, write_truth

    home = Path(demo.home)
    timings: dict[str, float] = {}
    begun = time.monotonic()

    # The broker (a JVM starting) and Airflow's database (created once) get ready in the
    # background while this process renders the world and backfills the lake.
    background = ThreadPoolExecutor(max_workers=2, thread_name_prefix="demo")
    started.append(_Part(home, "kafka", broker.stop))  # stop() is safe before start() ends
    _say(f"starting Kafka on {broker.bootstrap} (data {broker.home}) ...")
    kafka_ready = background.submit(_timed, broker.start)
    airflow_ready = None
    if nightly:
        from console.airflow import prepare

        airflow_ready = background.submit(_timed, prepare, demo, folder / "airflow-db.log")

    stream_start, stream_end = stream_window(days)
    history_start = stream_start - timedelta(days=history_days)
    world = build_world(
        n_customers=customers,
        days=history_days + days,
        start=history_start,
        seed=seed,
        telemetry_every=timedelta(hours=1),
    )
    truth_dir = folder / "truth"
    params = {
        "customers": customers,
        "days": history_days + days,
        "seed": seed,
        "stream_start": stream_start.isoformat(),
    }
    truth = write_truth(world, truth_dir, params)
    import_customers(demo, truth_dir / "customers.csv")
    _say(
        f"simulating {customers} customers with {truth['devices']} devices over "
        f"{history_days + days} days ({history_start:%Y-%m-%d} to {stream_end:%Y-%m-%d}): "
        f"{truth['faults']} injected faults, {truth['churns']} churns, "
        f"{sum(truth['benign'].values())} benign surprises"
    )
    # The world's follow-ups of its last days (deliveries, ticket updates) fall after now:
    # they have not happened, and a worker refuses events from the future (dead letters).
    events = takewhile(lambda e: e.event_time < stream_end, world_events(world))
    history, rest = _split(events, stream_start)

    t = time.monotonic()
    _say(f"backfilling {history_days} days of history straight to the lake ({demo.lake_dir}) ...")
    backfilled = write_lake(
        history, demo.lake_dir, total=truth["devices"] * history_days * 24, progress=True
    )
    timings["backfill_s"] = time.monotonic() - t
    timings["kafka_start_s"] = kafka_ready.result()
    background.shutdown(wait=False)  # the Airflow database may still be on its way
    stack.record(
        home, "kafka", pid=broker.pid() or 0, bootstrap=broker.bootstrap, log=str(broker.log_file)
    )
    asyncio.run(ensure_topics(broker.bootstrap))

    worker = WorkerProcess(demo, home / "demo" / "worker.log").start()
    started.append(_Part(home, "worker", worker.stop))
    stack.record(
        home,
        "worker",
        pid=worker.pid or 0,
        metrics=f"{worker.web_url}/metrics",
        health=f"{worker.web_url}/healthz",
        log=str(worker.log_path),
    )
    t = time.monotonic()
    _say(f"streaming the last {days} days through Kafka ...")
    produced = asyncio.run(
        produce(rest(), broker.bootstrap, total=_estimate(truth, days, customers))
    )
    timings["produce_s"] = time.monotonic() - t
    _say(f"Faust worker (pid {worker.pid}, log {worker.log_path}) is processing the stream ...")
    bar = progress_bar(total=produced, unit="ev", desc="processing")

    def progress(lag: dict[str, int]) -> None:
        done = max(0, produced - sum(v for k, v in lag.items() if k != "alerts"))
        bar.update(done - bar.n)

    try:
        timings["process_s"] = (
            wait_drained(demo, worker, on_progress=progress) + timings["produce_s"]
        )
    finally:
        bar.close()
    from console.demo_report import task_counts

    tasks_from_stream = task_counts(demo.database_url)

    outcome: dict[str, Any] = {}
    if nightly:
        from console.airflow import dags_test

        day = (stream_end - timedelta(days=1)).date()
        log = folder / "nightly.log"
        assert airflow_ready is not None
        timings["airflow_prepare_s"] = airflow_ready.result()
        log.unlink(missing_ok=True)
        _say(
            f"running the nightly DAG in Airflow for {day} (airflow dags test forewarn_nightly "
            f"{stream_end:%Y-%m-%d}; log {log}) ..."
        )
        timings["nightly_s"] = dags_test(
            demo, stream_end.date().isoformat(), log, publish_bootstrap=broker.bootstrap
        )
        outcome = nightly_outcome(demo, day, log)
        model = outcome.get("model") or {}
        if model.get("promoted"):
            t = time.monotonic()
            loaded = wait_model_loaded(demo, worker.pid or 0, model["version"])
            timings["model_reload_s"] = time.monotonic() - t
            outcome["model"]["loaded_by_worker"] = loaded
            _say(
                f"the worker loaded churn model {model['version']}"
                if loaded
                else f"the worker did not report model {model['version']} within 60 s"
            )

    stopping = None
    if not keep_running:
        # Everything it consumed is stored (it commits after storing, and the stream drained):
        # it takes its time to stop while the report is built.
        _say("stopping the worker (in the background) ...")
        stopping = ThreadPoolExecutor(max_workers=1).submit(_timed, started.pop().stop)

    t = time.monotonic()
    web = OutreachProcess(demo, outreach_port, folder / "outreach.log", insecure_cookies=True)
    web.start()
    started.append(_Part(home, "outreach", web.stop))
    stack.record(
        home,
        "outreach",
        pid=web.pid or 0,
        url=web.url,
        health=f"{web.url}/healthz",
        log=str(web.log_path),
    )
    tokens = demo_tokens(demo)

    from console.demo_report import build_report, summary_lines, write_report

    report = build_report(
        demo,
        truth_dir,
        since=stream_start,
        backfilled=backfilled,
        produced=produced,
        timings=timings,
        nightly=outcome,
        tasks_from_stream=tasks_from_stream,
    )
    report["outreach"] = outreach_summary(web.url, tokens["admin"])
    if stopping is not None:
        report["timings_s"]["worker_stop_s"] = round(stopping.result(), 1)
        from console.stack import worker_counters

        report["worker_counters"] = worker_counters(demo)  # its last word, written at stop
    report["timings_s"]["report_s"] = round(time.monotonic() - t, 1)
    report["stack"] = {
        "home": str(home),
        "kafka": broker.bootstrap,
        "worker_pid": worker.pid,
        "worker_metrics": f"{worker.web_url}/metrics",
        "outreach": web.url,
        "kept_running": keep_running,
    }
    # Everything up to the report, read back through the service's API (not the plotting).
    report["timings_s"]["total_s"] = round(time.monotonic() - begun, 1)
    paths = write_report(report, folder)
    print("\n".join(summary_lines(report)), flush=True)
    _say(f"report: {paths['html']} (also {paths['md'].name} and {paths['json'].name} there)")
    if keep_running:
        logins = "\n".join(f"    {role:<11} {token}" for role, token in tokens.items())
        _say(
            "the stack keeps running:\n"
            f"  outreach {web.url}/  log in with a demo token (shown once):\n{logins}\n"
            f"  kafka    {broker.bootstrap} (pid {broker.pid()}, log {broker.log_file})\n"
            f"  worker   pid {worker.pid}, metrics {worker.web_url}/metrics, log "
            f"{worker.log_path}\n"
            f"  outreach pid {web.pid}, log {web.log_path}\n"
            f"  Airflow  `make airflow` (or `forewarn airflow`) shows this run in its UI\n"
            f"  status   `forewarn --home {home} status`\n"
            f"  stop     `forewarn --home {home} stop` (or `make stop`)"
        )
    else:
        _say(
            f"stopped Kafka and the outreach service (it ran on {web.url}/; run with "
            "--keep-running to use it)"
        )
    return report


def _timed(function, *args) -> float:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    function(*args)
    return time.monotonic() - started


def _split(events: Iterator[Event], at: datetime):  # type: ignore[no-untyped-def]
    """Split one event-time ordered iterator at ``at``: the events before it (consume these
    first), and a function giving the rest (one pass over the world, nothing held in memory)."""
    first_after: list[Event] = []

    def before() -> Iterator[Event]:
        for event in events:
            if event.event_time >= at:
                first_after.append(event)
                return
            yield event

    def after() -> Iterator[Event]:
        yield from first_after
        yield from events

    return before(), after


def _estimate(truth: dict[str, Any], days: int, customers: int) -> int:
    """Readings (hourly) plus a guess of orders and tickets, for the producing bar; the bar's
    total is corrected to the real count at its end."""
    return truth["devices"] * days * 24 + customers * days // 3


def wait_model_loaded(settings: Settings, pid: int, version: str, timeout: float = 60.0) -> bool:
    """Block until the worker ``pid`` reports ``version`` as its churn model (its counters
    file, streams/dead_letters.py)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for path in (Path(settings.home) / "workers").glob(f"*-{pid}.json"):
            try:
                if json.loads(path.read_text()).get("churn_model") == version:
                    return True
            except (OSError, ValueError):
                pass
        time.sleep(1.0)
    return False


def nightly_outcome(settings: Settings, day: Any, log: Path) -> dict[str, Any]:
    """What the nightly run produced for ``day``, read from its outputs under the home."""
    import pandas as pd

    from console.airflow import task_states
    from forewarn.lake import read_events

    home = Path(settings.home)
    nightly = home / "nightly"
    out: dict[str, Any] = {"day": str(day), "tasks": task_states(log)}
    ids = ["event_id"]
    out["quality_gate"] = {
        "passed": out["tasks"].get("check_raw_events", "success") == "success",
        "rows": {
            topic: read_events(
                settings.lake_dir, topic, start=day, end=day + timedelta(days=1), columns=ids
            ).num_rows
            for topic in ("orders", "tickets")
        },
        "data_docs": str(nightly / "gx" / "gx" / "uncommitted" / "data_docs" / "local_site"),
    }
    meta_path = home / "models" / "churn" / str(day) / "metadata.json"
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        out["model"] = {
            key: meta.get(key)
            for key in (
                "version",
                "promoted",
                "reason",
                "train_rows",
                "challenger",
                "baseline",
                "champion",
                "champion_version",
            )
        }
        out["model"]["card_png"] = str(meta_path.parent / "card.png")
    values_path = nightly / "lifetime_value" / f"date={day}" / "customer_values.parquet"
    if values_path.exists():
        values = pd.read_parquet(values_path)
        tiers = values.groupby("value_tier")["clv_365d"].agg(["count", "sum", "mean"])
        out["lifetime_value"] = {
            tier: {
                "customers": int(row["count"]),
                "clv_365d_eur": round(float(row["sum"]), 2),
                "mean_clv_365d_eur": round(float(row["mean"]), 2),
            }
            for tier, row in tiers.iterrows()
        }
    at_risk = nightly / "lists" / f"at-risk-{day}.csv"
    if at_risk.exists():
        frame = pd.read_csv(at_risk)
        out["at_risk"] = {
            "listed": len(frame),
            "value_at_risk_eur": round(float(frame["value_at_risk"].sum()), 2)
            if len(frame)
            else 0.0,
            "top": frame.head(10).fillna("").to_dict("records"),
            "path": str(at_risk),
        }
    kpis = nightly / "kpis" / f"date={day}" / "kpis.parquet"
    if kpis.exists():
        frame = pd.read_parquet(kpis)
        overall = frame[frame["channel"] == "all"]
        if len(overall):
            row = overall.iloc[0].to_dict()
            out["kpis"] = {
                k: (round(float(v), 2) if isinstance(v, float) else v)
                for k, v in row.items()
                if k not in ("date", "channel")
            }
    return out


def import_customers(settings: Settings, path: Path) -> None:
    """Territories and channels for routing, as a CRM export would provide them."""
    import csv

    from outreach.migrate import migrate
    from outreach.store import TaskStore

    with path.open() as fh:
        rows = list(csv.DictReader(fh))
    migrate(settings.database_url)
    store = TaskStore(settings.database_url)
    try:
        store.import_customers(rows)
    finally:
        store.close()


def demo_tokens(settings: Settings) -> dict[str, str]:
    """One fresh token per role for the demo; printed once, stored hashed."""
    from outreach.migrate import migrate
    from outreach.store import TaskStore

    migrate(settings.database_url)
    store = TaskStore(settings.database_url)
    try:
        return {role: store.create_token(f"demo-{role}", role) for role in ROLES}
    finally:
        store.close()


def outreach_summary(url: str, admin_token: str) -> dict[str, Any]:
    """What the running service shows: today's lists, read through its own API."""
    import httpx

    headers = {"Authorization": f"Bearer {admin_token}"}
    lists = {
        kind: len(httpx.get(f"{url}/api/lists/{kind}", headers=headers, timeout=30).json())
        for kind in ("visit", "retention", "feedback")
    }
    uplift = httpx.get(f"{url}/api/uplift", headers=headers, timeout=30).json()
    return {"url": url, "todays_lists": lists, "uplift": uplift}
