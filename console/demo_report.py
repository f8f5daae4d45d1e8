"""The demo's report: one content model rendered three ways.

``build_report`` gathers the figures (stream quality against the ground truth and the naive
baselines, the nightly's gate, model, lifetime value, at-risk list and KPIs, the counts that
flowed); ``write_report`` writes ``report.json``, ``report.md`` and ``report.html`` (the HTML
page opens with a diagram of what ran, and shows the pictures inline); ``summary_lines`` is the
one screen the terminal prints.
"""

from __future__ import annotations

import html
import json
import math
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from console.report import plot_lead_times, quality_report
from console.stack import worker_counters
from forewarn.settings import Settings

# -- gathering ---------------------------------------------------------------------------------


def _streamed(read_events: Any, lake: Path, topic: str, since: datetime) -> int:
    """Events of ``topic`` in the lake from ``since`` on: the streamed part (the backfilled
    history may end on the same day)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    table = read_events(lake, topic, start=since.date(), columns=["event_id", "event_time"])
    after = pc.greater_equal(table["event_time"], pa.scalar(since, table["event_time"].type))
    return int(pc.sum(after).as_py() or 0)


def build_report(
    settings: Settings,
    truth_dir: Path,
    *,
    since: datetime,
    backfilled: int,
    produced: int,
    timings: dict[str, float],
    nightly: dict[str, Any],
    tasks_from_stream: dict[str, int] | None = None,
) -> dict[str, Any]:
    from forewarn.events import INPUT_TOPICS
    from forewarn.lake import read_events

    quality = quality_report(truth_dir, settings.database_url, settings.lake_dir, since)
    archived = {t: _streamed(read_events, settings.lake_dir, t, since) for t in INPUT_TOPICS}
    process_s = timings.get("process_s") or float("nan")
    return {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "stream_start": since.isoformat(),
        "events_backfilled": backfilled,
        "events_produced": produced,
        "events_archived": archived,
        "events_per_second": round(produced / process_s, 1),
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
        "worker_counters": worker_counters(settings),
        "tasks": task_counts(settings.database_url),
        "tasks_from_stream": tasks_from_stream or {},
        "nightly": nightly,
        **quality,
    }


def task_counts(database_url: str) -> dict[str, int]:
    """Tasks in the store by kind (visit, retention, feedback) and who opened them."""
    from outreach.store import TaskStore

    store = TaskStore(database_url)
    try:
        counts: dict[str, int] = {}
        for task in store.tasks():
            counts[task.kind] = counts.get(task.kind, 0) + 1
        return counts
    finally:
        store.close()


# -- the content, once -------------------------------------------------------------------------


def _fmt(value: Any, digits: int | None = None) -> str:
    """Numbers as people read them: euros and counts whole, rates to 0.1, metrics to 0.001."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        if digits is None:
            digits = 0 if abs(value) >= 100 else 1 if abs(value) >= 10 else 3
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _blocks(report: dict[str, Any]) -> list[tuple[str, Any]]:
    """The report as a list of (kind, content): h1/h2, bullets, table (header, rows), image
    (path, caption), diagram."""
    dev, churn = report["device_faults"], report["churn"]
    d, dn = dev["forewarn"], dev["naive_static_threshold"]
    c, cn = churn["forewarn"], churn["naive_first_complaint"]
    fb = report["negative_feedback"]
    dead = sum(v for k, v in report["worker_counters"].items() if k.startswith("dead_letters"))
    nightly = report.get("nightly") or {}
    out: list[tuple[str, Any]] = [("h1", "Forewarn demo report"), ("diagram", None)]
    out.append(
        (
            "bullets",
            [
                f"history: {report['events_backfilled']:,} events backfilled straight to the "
                f"lake, then {report['events_produced']:,} streamed through Kafka and the Faust "
                f"worker from {report['stream_start'][:10]} "
                f"({sum(report['events_archived'].values()):,} archived, {dead} dead letters)",
                f"worker throughput: {report['events_per_second']:,} events/s "
                f"(streaming took {report['timings_s'].get('process_s')} s)",
                f"device faults: {d['caught_before_complaint']} of {d['faults']} got a visit "
                f"task before the customer's complaint ({d['caught_before_failure']} before the "
                f"failure), median {d['lead_hours']['median']} h ahead",
                f"churners: {c['flagged_7d_before']} of {c['churners']} flagged at least 7 "
                f"days before leaving, median {c['lead_days']['median']} days ahead",
                f"negative feedback: reply tasks (due within 1 h) for {fb['covered']} of the "
                f"{fb['customers_with_low_csat']} customers who gave a low CSAT",
                "outreach service: "
                + (report.get("outreach") or {}).get("url", "-")
                + "/ with today's lists of "
                + ", ".join(
                    f"{n} {k}"
                    for k, n in ((report.get("outreach") or {}).get("todays_lists") or {}).items()
                )
                + " tasks (cut to each team's capacity)",
            ],
        )
    )
    if nightly:
        out += _nightly_blocks(nightly)
    out += [
        ("h2", "The stream against naive baselines on the same events"),
        (
            "table",
            (
                ["device faults", "Forewarn", "static threshold"],
                [
                    ["recall before complaint", d["recall"], dn["recall"]],
                    ["precision", d["precision"], dn["precision"]],
                    ["median lead (h)", d["lead_hours"]["median"], dn["lead_hours"]["median"]],
                    ["10th percentile lead (h)", d["lead_hours"]["p10"], dn["lead_hours"]["p10"]],
                    [
                        "false visits / 1,000 devices / month",
                        d["false_visits_per_1000_devices_month"],
                        dn["false_visits_per_1000_devices_month"],
                    ],
                ],
            ),
        ),
        (
            "table",
            (
                ["churn", "Forewarn", "first complaint rule"],
                [
                    ["recall (flagged >= 7 days ahead)", c["recall_7d"], cn["recall_7d"]],
                    ["precision", c["precision"], cn["precision"]],
                    ["median lead (days)", c["lead_days"]["median"], cn["lead_days"]["median"]],
                    ["10th percentile lead (days)", c["lead_days"]["p10"], cn["lead_days"]["p10"]],
                ],
            ),
        ),
        ("image", ("lead_times.png", "Injected faults: when Forewarn opened a visit task")),
        ("h2", "Every injected fault"),
        (
            "table",
            (
                ["device", "fault", "metric", "task opened", "before failure", "h ahead"],
                [
                    [
                        o["device_id"],
                        o["kind"],
                        o["metric"],
                        o["detected_at"] or "missed",
                        "yes" if o["caught_before_failure"] else "no",
                        o["hours_before_complaint"],
                    ]
                    for o in report["faults"]
                ],
            ),
        ),
    ]
    return out


def _nightly_blocks(n: dict[str, Any]) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = [("h2", f"The nightly DAG in Airflow, day {n['day']}")]
    gate = n.get("quality_gate") or {}
    tasks = n.get("tasks") or {}
    out.append(
        (
            "bullets",
            [
                "tasks: " + (", ".join(f"{t} {s}" for t, s in tasks.items()) or "all succeeded"),
                f"data-quality gate: {'passed' if gate.get('passed') else 'FAILED'} on the "
                "day's "
                + " and ".join(f"{v:,} {k}" for k, v in (gate.get("rows") or {}).items())
                + f" (Great Expectations; Data Docs in {gate.get('data_docs')}, and under "
                "Forewarn > Data quality in `make airflow`)",
            ],
        )
    )
    model = n.get("model")
    if model:
        rows = []
        for name, key in (
            ("challenger (this run)", "challenger"),
            (f"champion before ({model.get('champion_version') or 'none'})", "champion"),
            ("DummyClassifier", "baseline"),
        ):
            m = model.get(key) or {}
            rows.append(
                [name] + [m.get(k) for k in ("roc_auc", "pr_auc", "brier", "lift_top_decile")]
            )
        loaded = model.get("loaded_by_worker")
        out += [
            ("h2", "Churn model on the holdout"),
            (
                "bullets",
                [
                    f"version {model.get('version')}: "
                    f"{'promoted' if model.get('promoted') else 'not promoted'} "
                    f"({model.get('reason')}); trained on {_fmt(model.get('train_rows'))} rows",
                    "the running worker "
                    + (
                        "loaded it (hot reload through `model-updates`)"
                        if loaded
                        else "did not report it"
                        if loaded is False
                        else "keeps the champion in service"
                        if model.get("champion")
                        else "keeps its points score (no champion yet)"
                    ),
                ],
            ),
            ("table", (["model", "ROC AUC", "PR AUC", "Brier", "lift top 10%"], rows)),
            ("image", ("model_card.png", "Model card: ROC, calibration, permutation importance")),
        ]
    values = n.get("lifetime_value")
    if values:
        order = ["platinum", "gold", "silver", "bronze"]
        out += [
            ("h2", "Lifetime value tiers (BG/NBD + Gamma-Gamma, 365 days)"),
            (
                "table",
                (
                    ["tier", "customers", "CLV 365 d (EUR)", "mean per customer (EUR)"],
                    [
                        [
                            tier,
                            values[tier]["customers"],
                            values[tier]["clv_365d_eur"],
                            values[tier]["mean_clv_365d_eur"],
                        ]
                        for tier in order
                        if tier in values
                    ],
                ),
            ),
        ]
    at_risk = n.get("at_risk")
    if at_risk:
        out += [
            ("h2", f"Top of the at-risk list ({at_risk['listed']} customers listed)"),
            (
                "bullets",
                [
                    f"{at_risk['value_at_risk_eur']:,.0f} EUR of value at risk on the list "
                    "(P(churn) x 365-day CLV), each a retention task; file "
                    f"{at_risk['path']}"
                ],
            ),
            (
                "table",
                (
                    ["rank", "customer", "P(churn)", "CLV (EUR)", "at risk (EUR)", "tier", "why"],
                    [
                        [
                            r.get("rank"),
                            r.get("customer_id"),
                            r.get("p_churn"),
                            r.get("clv_365d"),
                            r.get("value_at_risk"),
                            r.get("value_tier"),
                            r.get("reasons"),
                        ]
                        for r in at_risk["top"]
                    ],
                ),
            ),
        ]
    kpis = n.get("kpis")
    if kpis:
        units = {
            "csat": "%",
            "nps": "points (-100..100)",
            "fcr": "%",
            "ces": "%",
            "avg_resolution_hours": "hours",
            "churn_rate": "%",
            "retention_rate": "%",
            "new_customer_rate": "%",
        }
        out += [
            ("h2", "The day's service KPIs (all channels)"),
            (
                "table",
                (
                    ["KPI", "value", "unit"],
                    [[k, v, units.get(k, "")] for k, v in kpis.items()],
                ),
            ),
        ]
    return out


# -- rendering ---------------------------------------------------------------------------------


def _markdown(blocks: list[tuple[str, Any]]) -> str:
    lines: list[str] = []
    for kind, content in blocks:
        if kind == "h1":
            lines += [f"# {content}", ""]
        elif kind == "h2":
            lines += [f"## {content}", ""]
        elif kind == "bullets":
            lines += [f"- {item}" for item in content] + [""]
        elif kind == "table":
            header, rows = content
            lines.append("| " + " | ".join(header) + " |")
            lines.append("|" + "---|" * len(header))
            lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
            lines.append("")
        elif kind == "image":
            lines += [f"![{content[1]}]({content[0]})", ""]
        elif kind == "diagram":
            lines += ["![what ran and what flowed](diagram.svg)", ""]
    return "\n".join(lines)


STYLE = (
    "body{font:15px/1.45 system-ui,sans-serif;margin:1.5rem auto;max-width:70rem;color:#222}"
    "table{border-collapse:collapse;margin:.5rem 0 1rem}"
    "td,th{border-bottom:1px solid #ddd;padding:.25rem .6rem;text-align:left}"
    "td.n{text-align:right;font-variant-numeric:tabular-nums}img{max-width:100%}"
    "h2{margin-top:2rem;border-bottom:2px solid #eee}"
)


def _html(blocks: list[tuple[str, Any]], diagram: str) -> str:
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>Forewarn demo report</title>"
        f"<style>{STYLE}</style></head><body>"
    ]
    for kind, content in blocks:
        if kind in ("h1", "h2"):
            parts.append(f"<{kind}>{html.escape(content)}</{kind}>")
        elif kind == "bullets":
            items = "".join(f"<li>{html.escape(item)}</li>" for item in content)
            parts.append(f"<ul>{items}</ul>")
        elif kind == "table":
            header, rows = content
            head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
            body = "".join(
                "<tr>"
                + "".join(
                    f"<td class='n'>{html.escape(_fmt(v))}</td>"
                    if isinstance(v, int | float)
                    else f"<td>{html.escape(_fmt(v))}</td>"
                    for v in row
                )
                + "</tr>"
                for row in rows
            )
            parts.append(f"<table><tr>{head}</tr>{body}</table>")
        elif kind == "image":
            parts.append(
                f"<figure><img src='{html.escape(content[0])}' alt='{html.escape(content[1])}'>"
                f"<figcaption>{html.escape(content[1])}</figcaption></figure>"
            )
        elif kind == "diagram":
            parts.append(
                f"<figure>{diagram}<figcaption>What ran, and what flowed between the "
                "parts</figcaption></figure>"
            )
    parts.append("</body></html>")
    return "\n".join(parts)


def diagram_svg(report: dict[str, Any]) -> str:
    """Boxes for the parts that ran, arrows labelled with the counts that flowed."""
    stack = report.get("stack") or {}
    nightly = report.get("nightly") or {}
    model = nightly.get("model") or {}
    gate = nightly.get("quality_gate") or {}
    tasks = report.get("tasks") or {}
    lists = (report.get("outreach") or {}).get("todays_lists") or {}
    archived = sum((report.get("events_archived") or {}).values())
    total = report["events_backfilled"] + report["events_produced"]
    w, h = 1090, 400
    boxes = {
        "sim": (20, 40, "Simulator", f"{total:,} events, 90 days"),
        "kafka": (300, 40, "Kafka broker", stack.get("kafka", "")),
        "worker": (580, 40, "Faust worker", f"pid {stack.get('worker_pid', '-')}"),
        "outreach": (860, 40, "Outreach service", stack.get("outreach", "")),
        "lake": (300, 300, "Event lake", "Parquet, by topic and day"),
        "airflow": (
            580,
            300,
            "Airflow nightly",
            f"airflow dags test, day {nightly.get('day', '-')}",
        ),
        "store": (860, 300, "Outreach store", " / ".join(f"{n} {k}" for k, n in tasks.items())),
    }
    bw, bh = 210, 64

    def box(key: str) -> str:
        x, y, title, sub = boxes[key]
        return (
            f"<rect x='{x}' y='{y}' width='{bw}' height='{bh}' rx='8' fill='#eef4fb' "
            "stroke='#4a78b0'/>"
            f"<text x='{x + bw / 2}' y='{y + 26}' text-anchor='middle' font-weight='bold'>"
            f"{html.escape(title)}</text>"
            f"<text x='{x + bw / 2}' y='{y + 46}' text-anchor='middle' font-size='11' "
            f"fill='#555'>{html.escape(str(sub)[:40])}</text>"
        )

    def arrow(
        a: str, b: str, label: str, side: str = "h", dy: float = 0, anchor: str = "", ly: float = 0
    ) -> str:
        ax, ay, *_ = boxes[a]
        bx, by, *_ = boxes[b]
        if side == "h":  # left box's right edge -> right box's left edge
            x1, y1 = (ax + bw, ay + bh / 2 + dy) if ax < bx else (ax, ay + bh / 2 + dy)
            x2, y2 = (bx, by + bh / 2 + dy) if ax < bx else (bx + bw, by + bh / 2 + dy)
        else:  # vertical-ish: bottom edge -> top edge, or top -> bottom
            x1, y1 = (ax + bw / 2 + dy, ay + bh) if ay < by else (ax + bw / 2 + dy, ay)
            x2, y2 = (bx + bw / 2 + dy, by) if ay < by else (bx + bw / 2 + dy, by + bh)
        mx, my = (x1 + x2) / 2, (y1 + y2) / 2 + ly
        if anchor == "end":
            mx -= 8
        return (
            f"<line x1='{x1}' y1='{y1}' x2='{x2}' y2='{y2}' stroke='#333' "
            "marker-end='url(#arrow)'/>"
            f"<text x='{mx + 4}' y='{my - 6}' font-size='11' "
            f"text-anchor='{anchor or ('middle' if side == 'h' else 'start')}'>"
            + "".join(
                f"<tspan x='{mx + 4}' dy='{0 if i == 0 else 14}'>{html.escape(line)}</tspan>"
                for i, line in enumerate(label.split("\n"))
            )
            + "</text>"
        )

    model_label = (
        f"model {model.get('version')}\n"
        + ("promoted, loaded" if model.get("loaded_by_worker") else "promoted")
        if model.get("promoted")
        else "model kept (not promoted)"
        if model
        else "no model"
    )
    arrows = [
        arrow("sim", "kafka", f"{report['events_produced']:,} streamed"),
        arrow("kafka", "worker", f"{report['events_produced']:,} consumed"),
        arrow(
            "worker",
            "store",
            "stream's tasks:\n"
            + "\n".join(f"{n} {k}" for k, n in (report.get("tasks_from_stream") or {}).items()),
            side="v",
            dy=15,
            ly=-70,
        ),
        arrow("sim", "lake", f"{report['events_backfilled']:,} backfilled", side="v"),
        arrow("worker", "lake", f"{archived:,} archived", side="v", dy=-40),
        arrow("lake", "airflow", f"gate: {sum((gate.get('rows') or {}).values()):,} rows"),
        arrow(
            "airflow",
            "worker",
            model_label + "\nthrough model-updates",
            side="v",
            dy=40,
            anchor="end",
            ly=30,
        ),
        arrow(
            "airflow",
            "store",
            f"{(nightly.get('at_risk') or {}).get('listed', 0)} at-risk tasks",
        ),
        arrow(
            "store",
            "outreach",
            "today's lists:\n" + "\n".join(f"{n} {k}" for k, n in lists.items()),
            side="v",
        ),
    ]
    # Simulator -> lake runs diagonally; draw it as such.
    return (
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{w}' height='{h}' "
        f"viewBox='0 0 {w} {h}' font-family='system-ui,sans-serif' font-size='13'>"
        "<defs><marker id='arrow' viewBox='0 0 10 10' refX='9' refY='5' markerWidth='7' "
        "markerHeight='7' orient='auto-start-reverse'><path d='M0,0 L10,5 L0,10 z' "
        "fill='#333'/></marker></defs>"
        + "".join(box(k) for k in boxes)
        + "".join(arrows)
        + "</svg>"
    )


def write_report(report: dict[str, Any], folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": folder / "report.json",
        "md": folder / "report.md",
        "html": folder / "report.html",
    }
    paths["json"].write_text(json.dumps(report, indent=2, default=str) + "\n")
    plot_lead_times(report["faults"], folder / "lead_times.png")
    card = ((report.get("nightly") or {}).get("model") or {}).get("card_png")
    if card and Path(card).exists():
        shutil.copyfile(card, folder / "model_card.png")
    blocks = _blocks(report)
    if not (folder / "model_card.png").exists():
        blocks = [b for b in blocks if not (b[0] == "image" and b[1][0] == "model_card.png")]
    diagram = diagram_svg(report)
    (folder / "diagram.svg").write_text(diagram)
    paths["md"].write_text(_markdown(blocks))
    paths["html"].write_text(_html(blocks, diagram))
    return paths


def summary_lines(report: dict[str, Any]) -> list[str]:
    """One screen for the terminal: what ran and what it found; the details are in the report."""
    d = report["device_faults"]["forewarn"]
    c = report["churn"]["forewarn"]
    fb = report["negative_feedback"]
    n = report.get("nightly") or {}
    lines = [
        "",
        "Forewarn demo",
        f"  stream    {report['events_produced']:,} events through Kafka and the worker "
        f"({report['events_per_second']:,} ev/s), {report['events_backfilled']:,} backfilled",
        f"  faults    {d['caught_before_complaint']}/{d['faults']} visit tasks before the "
        f"complaint, median {d['lead_hours']['median']} h ahead "
        f"(static threshold: {report['device_faults']['naive_static_threshold']['recall']})",
        f"  churn     {c['flagged_7d_before']}/{c['churners']} flagged >= 7 days ahead, "
        f"precision {c['precision']}",
        f"  feedback  reply tasks for {fb['covered']}/{fb['customers_with_low_csat']} low-CSAT "
        "customers",
    ]
    if n:
        gate = n.get("quality_gate") or {}
        model = n.get("model") or {}
        ch, base = model.get("challenger") or {}, model.get("baseline") or {}
        lines.append(
            f"  nightly   day {n['day']}: gate {'passed' if gate.get('passed') else 'FAILED'}; "
            f"churn model ROC AUC {_fmt(ch.get('roc_auc'))} vs dummy "
            f"{_fmt(base.get('roc_auc'))}, "
            f"{'promoted' if model.get('promoted') else 'not promoted'}"
            + (", loaded by the worker" if model.get("loaded_by_worker") else "")
        )
        risk = n.get("at_risk") or {}
        kpis = n.get("kpis") or {}
        if risk:
            lines.append(
                f"  at risk   {risk['listed']} customers, {risk['value_at_risk_eur']:,.0f} EUR "
                "value at risk"
            )
        if kpis:
            lines.append(
                "  KPIs      "
                + ", ".join(
                    f"{k.upper()} {_fmt(kpis.get(k), 1)}"
                    for k in ("csat", "nps", "fcr", "ces")
                    if k in kpis
                )
            )
    lists = (report.get("outreach") or {}).get("todays_lists") or {}
    lines.append("  lists     " + ", ".join(f"{v} {k}" for k, v in lists.items()))
    lines.append(f"  took      {report['timings_s'].get('total_s')} s")
    return lines
