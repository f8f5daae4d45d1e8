"""``forewarn demo``: the whole stream path on embedded defaults, then a report.

Kafka (its own data under ``<home>/demo``), the simulator, one Faust worker until the stream is
drained, the outreach store (SQLite) and a report of what was caught and how early, written to
``<home>/demo/report.json`` and ``report.md`` (with a picture of the lead times).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from console.kafka.local import LocalKafka
from console.report import plot_lead_times, quality_report
from console.stack import OutreachProcess, WorkerProcess, wait_drained, worker_counters
from forewarn.kafka.admin import ensure_topics
from forewarn.progress import progress_bar
from forewarn.publish import produce
from forewarn.settings import Settings
from simulator import build_world, world_events, write_truth

START = datetime(2026, 1, 5, tzinfo=UTC)


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
) -> dict[str, Any]:
    home = settings.home / "demo"
    broker = LocalKafka(home=home / "kafka", cache_dir=settings.cache_dir, port=settings.kafka_port)
    if fresh:
        broker.stop()
        shutil.rmtree(home, ignore_errors=True)
    demo = replace(
        settings.with_home(home), kafka_bootstrap=broker.bootstrap, group_id="forewarn-demo"
    )
    timings: dict[str, float] = {}

    t = time.monotonic()
    _say(f"starting Kafka on {broker.bootstrap} ...")
    broker.start()
    asyncio.run(ensure_topics(broker.bootstrap))
    timings["kafka_start_s"] = time.monotonic() - t

    world = build_world(
        n_customers=customers, days=days, start=START, seed=seed, telemetry_every=timedelta(hours=1)
    )
    truth_dir = home / "truth"
    truth = write_truth(world, truth_dir, {"customers": customers, "days": days, "seed": seed})
    import_customers(demo, truth_dir / "customers.csv")
    _say(
        f"simulating {customers} customers, {truth['devices']} devices, {days} days: "
        f"{truth['faults']} injected faults, {truth['churns']} churns, "
        f"{sum(truth['benign'].values())} benign surprises"
    )
    t = time.monotonic()
    produced = asyncio.run(
        produce(world_events(world), broker.bootstrap, total=truth["devices"] * days * 24)
    )
    timings["produce_s"] = time.monotonic() - t

    worker = WorkerProcess(demo, home / "worker.log").start()
    _say(
        f"Faust worker started (pid {worker.pid}, log {worker.log_path}); waiting for it "
        "to drain the stream ..."
    )
    bar = progress_bar(total=produced, unit="ev", desc="processing")

    def progress(lag: dict[str, int]) -> None:
        done = max(0, produced - sum(lag.values()))
        bar.update(done - bar.n)

    try:
        timings["process_s"] = wait_drained(demo, worker, on_progress=progress)
    except RuntimeError:
        worker.stop()
        if not keep_running:
            broker.stop()
        raise
    finally:
        bar.close()
    if not keep_running:
        _say("stopping the worker (it flushes the lake) ...")
        worker.stop()

    web = OutreachProcess(demo, outreach_port, home / "outreach.log", insecure_cookies=True)
    web.start()
    tokens = demo_tokens(demo)
    report = build_report(demo, truth_dir, produced, timings)
    report["outreach"] = outreach_summary(web.url, tokens["admin"])
    write_report(report, home)
    print((home / "report.md").read_text())
    logins = "\n".join(f"    {role:<11} {token}" for role, token in tokens.items())
    if keep_running:
        _say(
            "the stack keeps running:\n"
            f"  outreach {web.url}/  (log in with one of these demo tokens, shown once:)\n"
            f"{logins}\n"
            f"  kafka    {broker.bootstrap} (stop: forewarn --home {home} kafka stop)\n"
            f"  worker   pid {worker.pid}, log {worker.log_path}\n"
            f"  store    {demo.database_url}\n"
            f"  lake     {demo.lake_dir}"
        )
    else:
        web.stop()
        broker.stop()
        _say(
            f"stopped Kafka, the worker and the outreach service (it ran on {web.url}/; "
            "run with --keep-running to use it)"
        )
    return report


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
        return {
            role: store.create_token(f"demo-{role}", role)
            for role in ("technician", "dispatcher", "retention", "support", "admin")
        }
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


def build_report(
    settings: Settings, truth_dir: Path, produced: int, timings: dict[str, float]
) -> dict[str, Any]:
    from forewarn.events import INPUT_TOPICS
    from forewarn.lake import read_events

    quality = quality_report(truth_dir, settings.database_url, settings.lake_dir)
    archived = {
        t: read_events(settings.lake_dir, t, columns=["event_id"]).num_rows for t in INPUT_TOPICS
    }
    process_s = timings.get("process_s") or float("nan")
    return {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "events_produced": produced,
        "events_archived": archived,
        "events_per_second": round(produced / process_s, 1),
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
        "worker_counters": worker_counters(settings),
        **quality,
    }


def _row(label: str, ours: Any, naive: Any) -> str:
    return (
        f"| {label} | {ours if ours is not None else '-'} | {naive if naive is not None else '-'} |"
    )


def write_report(report: dict[str, Any], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    plot_lead_times(report["faults"], folder / "lead_times.png")
    dev, churn = report["device_faults"], report["churn"]
    d, dn = dev["forewarn"], dev["naive_static_threshold"]
    c, cn = churn["forewarn"], churn["naive_first_complaint"]
    fb = report["negative_feedback"]
    lines = [
        "# Forewarn demo report",
        "",
        f"- events produced: {report['events_produced']:,}; archived in the lake: "
        f"{sum(report['events_archived'].values()):,}; dead letters: "
        f"{sum(v for k, v in report['worker_counters'].items() if k.startswith('dead_letters'))}",
        f"- worker throughput: {report['events_per_second']:,} events/s "
        f"(processing took {report['timings_s'].get('process_s')} s)",
        f"- device faults: {d['caught_before_complaint']} of {d['faults']} got a visit task "
        f"before the customer's complaint ({d['caught_before_failure']} before the failure), "
        f"median {d['lead_hours']['median']} h ahead",
        f"- churners: {c['flagged_7d_before']} of {c['churners']} flagged at least 7 days "
        f"before leaving, median {c['lead_days']['median']} days ahead",
        f"- negative feedback: reply tasks (due within 1 h) for {fb['covered']} of the "
        f"{fb['customers_with_low_csat']} customers who gave a low CSAT, "
        f"{fb['customers_with_a_reply_task']} customers in all",
        f"- outreach service: {report['outreach']['url']}/ with today's lists of "
        + ", ".join(f"{n} {k}" for k, n in report["outreach"]["todays_lists"].items())
        + " tasks (cut to each team's capacity)",
        "",
        "## Against naive baselines on the same events",
        "",
        "| device faults | Forewarn | static threshold |",
        "|---|---|---|",
        _row("recall before complaint", d["recall"], dn["recall"]),
        _row("precision", d["precision"], dn["precision"]),
        _row("median lead (h)", d["lead_hours"]["median"], dn["lead_hours"]["median"]),
        _row("10th percentile lead (h)", d["lead_hours"]["p10"], dn["lead_hours"]["p10"]),
        _row(
            "false visits / 1,000 devices / month",
            d["false_visits_per_1000_devices_month"],
            dn["false_visits_per_1000_devices_month"],
        ),
        "",
        "| churn | Forewarn | first complaint rule |",
        "|---|---|---|",
        _row("recall (flagged >= 7 days ahead)", c["recall_7d"], cn["recall_7d"]),
        _row("precision", c["precision"], cn["precision"]),
        _row("median lead (days)", c["lead_days"]["median"], cn["lead_days"]["median"]),
        _row("10th percentile lead (days)", c["lead_days"]["p10"], cn["lead_days"]["p10"]),
        "",
        "![lead times](lead_times.png)",
        "",
        "| device | fault | metric | task opened | before failure | hours before complaint |",
        "|---|---|---|---|---|---|",
    ]
    for o in report["faults"]:
        lines.append(
            f"| {o['device_id']} | {o['kind']} | {o['metric']} | "
            f"{o['detected_at'] or 'missed'} | {'yes' if o['caught_before_failure'] else 'no'} | "
            f"{o['hours_before_complaint'] if o['hours_before_complaint'] is not None else '-'} |"
        )
    (folder / "report.md").write_text("\n".join(lines) + "\n")
