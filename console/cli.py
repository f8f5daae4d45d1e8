"""The ``forewarn`` command line: local stack, simulator, worker, demo."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from datetime import date as date_type
from pathlib import Path

import click

from forewarn.events import PARTITIONS
from forewarn.settings import Settings, keep_files_private


@click.group()
@click.option(
    "--home",
    type=click.Path(path_type=Path),
    default=None,
    help="Folder for everything the local stack writes (FOREWARN_HOME, default var/).",
)
@click.option(
    "--bootstrap",
    default=None,
    help="Kafka host:port (FOREWARN_KAFKA_BOOTSTRAP, default 127.0.0.1:9092).",
)
@click.pass_context
def main(ctx: click.Context, home: Path | None, bootstrap: str | None) -> None:
    """Forewarn: catch failing devices and at-risk customers before they complain."""
    keep_files_private()
    settings = Settings()
    if home is not None:
        settings = settings.with_home(home)
    if bootstrap is not None:
        settings = replace(settings, kafka_bootstrap=bootstrap)
    ctx.obj = settings


# --- local Kafka -------------------------------------------------------------------------------


@main.group()
def kafka() -> None:
    """Run a real single-node Kafka 4 broker (KRaft) from Maven Central jars."""


def _broker(settings: Settings):  # type: ignore[no-untyped-def]
    from console.kafka.local import LocalKafka

    return LocalKafka(
        home=settings.home / "kafka", cache_dir=settings.cache_dir, port=settings.kafka_port
    )


def _fail(exc: Exception) -> None:
    click.echo(f"forewarn: {exc}", err=True)
    sys.exit(1)


@kafka.command("fetch")
@click.pass_obj
def kafka_fetch(settings: Settings) -> None:
    """Download the broker jars into the cache (once)."""
    from console.kafka.local import KafkaError, fetch_jars

    try:
        click.echo(f"kafka jars: {fetch_jars(settings.cache_dir)}")
    except KafkaError as exc:
        _fail(exc)


@kafka.command("start")
@click.pass_obj
def kafka_start(settings: Settings) -> None:
    """Start the broker (idempotent) and create Forewarn's topics."""
    from console.kafka.local import KafkaError
    from forewarn.kafka.admin import ensure_topics

    broker = _broker(settings)
    try:
        broker.start()
    except KafkaError as exc:
        _fail(exc)
    created = asyncio.run(ensure_topics(broker.bootstrap))
    click.echo(f"kafka ready on {broker.bootstrap} (pid {broker.pid()}, data {broker.home})")
    if created:
        click.echo(f"created topics: {', '.join(created)}")


@kafka.command("stop")
@click.pass_obj
def kafka_stop(settings: Settings) -> None:
    """Stop the broker cleanly."""
    click.echo("kafka stopped" if _broker(settings).stop() else "kafka was not running")


@kafka.command("status")
@click.pass_obj
def kafka_status(settings: Settings) -> None:
    """Print whether the broker runs and answers (exit code 1 if not ready)."""
    status = _broker(settings).status()
    click.echo(json.dumps(status, indent=2))
    sys.exit(0 if status["ready"] else 1)


@main.command()
@click.option("--partitions", default=PARTITIONS, show_default=True)
@click.option("--replication", default=1, show_default=True)
@click.pass_obj
def topics(settings: Settings, partitions: int, replication: int) -> None:
    """Create Forewarn's topics on any cluster (before the first worker starts)."""
    from forewarn.kafka.admin import ensure_topics

    created = asyncio.run(ensure_topics(settings.kafka_bootstrap, partitions, replication))
    click.echo(f"created: {', '.join(created)}" if created else "all topics exist")


# --- simulator ---------------------------------------------------------------------------------


@main.command()
@click.option("--customers", default=300, show_default=True)
@click.option("--days", default=30, show_default=True)
@click.option("--seed", default=7, show_default=True)
@click.option(
    "--start",
    "start_date",
    default="2026-01-05",
    show_default=True,
    help="First simulated day (UTC).",
)
@click.option(
    "--telemetry-minutes",
    default=60,
    show_default=True,
    help="Minutes between two readings of a device.",
)
@click.option(
    "--to",
    "target",
    type=click.Choice(["kafka", "lake", "csv", "none"]),
    default="kafka",
    show_default=True,
    help="Produce to Kafka, backfill the lake, write CSV files for `forewarn replay`, or only "
    "write the ground truth.",
)
@click.option("--rate", default=0.0, show_default=True, help="Events/s; 0 = as fast as possible.")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Folder for the ground truth (default <home>/sim/truth).",
)
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option(
    "--hard",
    is_flag=True,
    help="A harder world: faults without precursor codes, excursions that recover, unmarked "
    "maintenance, sampling from 15 min to 2 h per device, count metrics (docs/detection.md).",
)
@click.pass_obj
def simulate(
    settings: Settings,
    customers: int,
    days: int,
    seed: int,
    start_date: str,
    telemetry_minutes: int,
    target: str,
    rate: float,
    out: Path | None,
    quiet: bool,
    hard: bool,
) -> None:
    """Simulate customers, devices, orders and tickets with injected faults and churn."""
    from forewarn.publish import produce, write_lake
    from simulator import build_world, world_events, write_truth

    params = {
        "customers": customers,
        "days": days,
        "seed": seed,
        "start": start_date,
        "telemetry_minutes": telemetry_minutes,
        "hard": hard,
    }
    world = build_world(
        n_customers=customers,
        days=days,
        seed=seed,
        start=datetime.fromisoformat(start_date).replace(tzinfo=UTC),
        telemetry_every=timedelta(minutes=telemetry_minutes),
        hard=hard,
    )
    out = out or settings.home / "sim" / "truth"
    summary = write_truth(world, out, params)
    click.echo(
        f"ground truth in {out}: {summary['faults']} faults, {summary['churns']} churns, "
        f"{sum(summary['benign'].values())} benign surprises"
    )
    estimate = len(world.devices) * int(days * 24 * 60 / telemetry_minutes)
    if target == "kafka":
        from forewarn.kafka.admin import ensure_topics

        asyncio.run(ensure_topics(settings.kafka_bootstrap))
        n = asyncio.run(
            produce(
                world_events(world),
                settings.kafka_bootstrap,
                rate=rate,
                total=estimate,
                progress=not quiet,
            )
        )
        click.echo(f"produced {n} events to {settings.kafka_bootstrap}")
    elif target == "csv":
        from simulator.export import write_csv

        counts = write_csv(world_events(world), out.parent)
        click.echo(
            f"wrote {counts['device_telemetry']} readings to "
            f"{out.parent / 'device_telemetry.csv'} and {counts['customer_events']} "
            f"customer events to {out.parent / 'customer_events.csv'}"
        )
    elif target == "lake":
        n = write_lake(world_events(world), settings.lake_dir, total=estimate, progress=not quiet)
        click.echo(f"wrote {n} events to {settings.lake_dir}")


@main.command()
@click.option("--detector", type=click.Choice(["device", "customer"]), required=True)
@click.option(
    "--input",
    "input_path",
    type=click.Path(exists=True, path_type=Path),
    required=True,
    help="CSV history, one row per reading (device) or event (customer).",
)
@click.option("--time-column", required=True, help="Event time (ISO 8601; no zone means UTC).")
@click.option("--entity-column", required=True, help="Device id (device) or customer id.")
@click.option(
    "--value-columns",
    default="",
    help="Comma-separated metric columns (device; default: every numeric column).",
)
@click.option("--error-codes-column", default=None, help="Error codes, ';'-separated (device).")
@click.option("--customer-column", default=None, help="Owner of the device (device).")
@click.option("--mode-column", default=None, help="normal/maintenance/self_test (device).")
@click.option("--firmware-column", default=None, help="Firmware version (device).")
@click.option(
    "--kind-column",
    default="event",
    show_default=True,
    help="order / ticket / device_fault per row (customer).",
)
@click.option(
    "--output", type=click.Path(path_type=Path), required=True, help="Alerts CSV to write."
)
def replay(
    detector: str,
    input_path: Path,
    time_column: str,
    entity_column: str,
    value_columns: str,
    error_codes_column: str | None,
    customer_column: str | None,
    mode_column: str | None,
    firmware_column: str | None,
    kind_column: str,
    output: Path,
) -> None:
    """Backtest a stream detector on a CSV history and write its alerts."""
    from streams.replay import replay_customers, replay_devices, write_alerts

    try:
        if detector == "device":
            result = replay_devices(
                input_path,
                time_column=time_column,
                entity_column=entity_column,
                value_columns=[c for c in value_columns.split(",") if c],
                error_codes_column=error_codes_column,
                customer_column=customer_column,
                mode_column=mode_column,
                firmware_column=firmware_column,
            )
        else:
            result = replay_customers(
                input_path,
                time_column=time_column,
                entity_column=entity_column,
                kind_column=kind_column,
            )
    except ValueError as exc:
        _fail(exc)
    write_alerts(result.alerts, output)
    click.echo(json.dumps({**result.summary(), "output": str(output)}, indent=2))


# --- model registry ----------------------------------------------------------------------------


@main.group()
@click.option("--model", "model_name", default="churn", show_default=True)
@click.pass_context
def models(ctx: click.Context, model_name: str) -> None:
    """The model registry: versions, stages (candidate, champion, archived), history."""
    from forewarn.registry import Registry

    ctx.obj = (ctx.obj, Registry(ctx.obj.models_dir / model_name))


@models.command("list")
@click.pass_obj
def models_list(obj: tuple) -> None:
    """Every published version with its stage, ROC AUC and gate decision."""
    _, registry = obj
    versions = registry.versions()
    if not versions:
        click.echo(f"no versions in {registry.root}")
        return
    click.echo(f"{'version':24s} {'stage':10s} {'ROC AUC':8s} {'gate':6s} published")
    for m in versions:
        auc = m.get("metrics", {}).get("roc_auc")
        gate = m.get("gate", {}).get("passed")
        click.echo(
            f"{m['version']:24s} {m['stage']:10s} "
            f"{'-' if auc is None else f'{auc:.4f}':8s} "
            f"{'-' if gate is None else ('pass' if gate else 'fail'):6s} "
            f"{str(m.get('published_at', ''))[:19]}"
        )


@models.command("show")
@click.argument("version")
@click.pass_obj
def models_show(obj: tuple, version: str) -> None:
    """A version's manifest (signature, metrics, gate, lineage, environment) and history."""
    from forewarn.registry import RegistryError

    _, registry = obj
    try:
        manifest = registry.manifest(version)
    except RegistryError as exc:
        _fail(exc)
    stage = next((m["stage"] for m in registry.versions() if m["version"] == version), None)
    history = [e for e in registry.history() if e["version"] == version]
    click.echo(json.dumps({**manifest, "stage": stage, "history": history}, indent=2))


def _announce(settings: Settings, registry) -> None:  # type: ignore[no-untyped-def]
    from models.nightly import announce_champion

    if not settings.publish_bootstrap:
        click.echo(
            "not announced (FOREWARN_PUBLISH_BOOTSTRAP is not set): running workers keep "
            "their model until they read a model-updated message"
        )
        return
    sent = announce_champion(registry.root, settings.publish_bootstrap, datetime.now(UTC))
    click.echo(f"announced to {settings.publish_bootstrap}" if sent else "nothing announced")


@models.command("promote")
@click.argument("version")
@click.option("--force", is_flag=True, help="Promote a version that failed the gate.")
@click.pass_obj
def models_promote(obj: tuple, version: str, force: bool) -> None:
    """Make VERSION the champion (the current one is archived) and announce it."""
    from forewarn.registry import RegistryError

    settings, registry = obj
    try:
        gate = registry.manifest(version).get("gate", {})
        if not gate.get("passed") and not force:
            raise RegistryError(
                f"{version} did not pass the promotion gate ({gate.get('reason', 'not judged')});"
                " --force to promote it anyway"
            )
        pointer = registry.promote(
            version, reason="promoted by hand" + (" (forced)" if force else "")
        )
    except RegistryError as exc:
        _fail(exc)
    click.echo(f"champion: {pointer['version']} (sha256 {pointer['sha256']})")
    _announce(settings, registry)


@models.command("rollback")
@click.pass_obj
def models_rollback(obj: tuple) -> None:
    """Promote the champion before the current one again, and announce it."""
    from forewarn.registry import RegistryError

    settings, registry = obj
    try:
        pointer = registry.rollback()
    except RegistryError as exc:
        _fail(exc)
    click.echo(f"champion: {pointer['version']} (sha256 {pointer['sha256']})")
    _announce(settings, registry)


# --- churn on a table ---------------------------------------------------------------------------


@main.group()
def churn() -> None:
    """Churn models: try the nightly's learner on your own labelled table."""


def _print_table_report(summary: dict, differences: dict) -> None:
    names = {
        "learner": "learner (stack)",
        "logistic": "logistic regression",
        "boosting_default": "default boosting",
        "dummy": "dummy (prior)",
    }
    click.echo(f"{'model':22s} {'ROC AUC [95% CI]':26s} {'PR AUC':7s} {'Brier':7s} lift@10%")
    for key, name in names.items():
        m = summary[key]
        auc = m["roc_auc"]
        click.echo(
            f"{name:22s} {auc['mean']:.4f} [{auc['low']:.4f}, {auc['high']:.4f}]   "
            f"{m['pr_auc']['mean']:.4f}  {m['brier']['mean']:.4f}  "
            f"{m['lift_top_decile']['mean']:.2f}"
        )
    for key, d in differences.items():
        click.echo(
            f"learner - {names[key]}: {d['mean']:+.4f} ROC AUC [{d['low']:+.4f}, {d['high']:+.4f}]"
        )


@churn.command("fit")
@click.option(
    "--table",
    "table_path",
    type=click.Path(path_type=Path),
    required=True,
    help="CSV (',', ';', tab or '|') or Parquet file, one row per customer.",
)
@click.option("--id", "id_column", default=None, help="The customer id column.")
@click.option("--label", "label_column", default=None, help="The 0/1 label (1 = churned).")
@click.option(
    "--map",
    "mapping_path",
    type=click.Path(path_type=Path),
    default=None,
    help="YAML column mapping (docs/churn-table.md): id, label, column types, date format.",
)
@click.option("--folds", default=5, show_default=True)
@click.option("--repeats", default=5, show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--jobs", default=1, show_default=True, help="Folds fitted in parallel.")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Folder for report.json, card.md, card.png and model.skops "
    "(default <home>/churn-fit/<table name>).",
)
@click.option("--quiet", is_flag=True, help="No progress.")
@click.pass_obj
def churn_fit(
    settings: Settings,
    table_path: Path,
    id_column: str | None,
    label_column: str | None,
    mapping_path: Path | None,
    folds: int,
    repeats: int,
    seed: int,
    jobs: int,
    out: Path | None,
    quiet: bool,
) -> None:
    """Cross-validate the churn learner on a labelled table beside the baselines, write its
    model card and the model fitted on every row."""
    from models.churn_table import run_table

    def progress(done: int, total: int) -> None:
        if not quiet:
            click.echo(f"fold {done}/{total}", err=True)

    out = out or settings.home / "churn-fit" / table_path.stem
    try:
        result = run_table(
            table_path,
            out,
            id_column=id_column,
            label_column=label_column,
            mapping_path=mapping_path,
            n_splits=folds,
            n_repeats=repeats,
            seed=seed,
            jobs=jobs,
            progress=progress,
        )
    except ValueError as exc:  # TableError and the learner's own refusals
        _fail(exc)
    except Exception as exc:  # never a traceback for a user's file (issue 16)
        _fail(RuntimeError(f"unexpected {type(exc).__name__} on {table_path}: {exc}"))
    table = result["table"]
    click.echo(
        f"{table['file']}: {table['rows']} rows, {table['churners']} churners "
        f"({table['churn_rate']:.1%}); numeric {table['numeric']}, "
        f"categorical {table['categorical']}"
    )
    for note in table["notes"]:
        click.echo(f"note: {note}")
    protocol = result["protocol"]
    click.echo(
        f"{protocol['folds']}-fold CV x {protocol['repeats']} (seed {protocol['seed']}), "
        "same folds for every model; 95% intervals corrected for overlapping folds"
    )
    _print_table_report(result["summary"], result["learner_minus_baseline_roc_auc"])
    for column, rows in result["unseen_categories"]["rows_by_column"].items():
        click.echo(
            f"note: {rows} held-out rows of {column!r} had a category their training fold "
            "never saw (scored as a rare category)"
        )
    click.echo(f"card, report and model in {out}")


@main.command()
@click.option(
    "--detector",
    type=click.Choice(["device", "customer"]),
    default="device",
    show_default=True,
    help="device: readings against failures; customer: events against churn dates.",
)
@click.option(
    "--input",
    "input_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="Readings (device) or customer events, CSV or Parquet.",
)
@click.option(
    "--labels",
    "labels_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="CSV of failures (entity,start) or labelled anomaly windows (entity,start,end).",
)
@click.option("--time-column", default="time", show_default=True, help="Reading time column.")
@click.option(
    "--entity-column", default=None, help="Device column (default device_id) or customer_id."
)
@click.option(
    "--kind-column", default="event", show_default=True, help="order/ticket/... (customer)."
)
@click.option(
    "--value-columns", default="", help="Comma-separated metric columns (default: numeric)."
)
@click.option("--error-codes-column", default=None, help="Error codes, ';'-separated.")
@click.option("--mode-column", default=None, help="normal/maintenance/self_test (device).")
@click.option("--firmware-column", default=None, help="Firmware version (device).")
@click.option("--labels-entity-column", default="entity", show_default=True)
@click.option("--labels-start-column", default="start", show_default=True)
@click.option("--labels-end-column", default="end", show_default=True)
@click.option(
    "--lead-min-hours",
    type=float,
    default=None,
    help="A visit must come at least this long before a failure (1; customer: 168).",
)
@click.option(
    "--lead-max-hours",
    type=float,
    default=None,
    help="... and at most this long before it or a window's start (48; customer: 2160).",
)
@click.option(
    "--visit-hours",
    type=float,
    default=None,
    help="Alerts of an entity this close together are one visit (24; customer: 720).",
)
@click.option(
    "--recovery-hours",
    type=float,
    default=None,
    help="Visits this long after a failure are neither caught nor false (72; customer: 0).",
)
@click.option(
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("var/evaluate"),
    show_default=True,
    help="Folder for summary.json, sweep.csv, sweep.png.",
)
def evaluate(
    detector: str,
    input_path: Path,
    labels_path: Path,
    time_column: str,
    entity_column: str | None,
    kind_column: str,
    value_columns: str,
    error_codes_column: str | None,
    mode_column: str | None,
    firmware_column: str | None,
    labels_entity_column: str,
    labels_start_column: str,
    labels_end_column: str,
    lead_min_hours: float | None,
    lead_max_hours: float | None,
    visit_hours: float | None,
    recovery_hours: float | None,
    output: Path,
) -> None:
    """Labelled backtest of a detector: recall within the lead window, false visits per
    device (or customer) and quarter, lead times, and a threshold sweep (docs/detection.md)."""
    import pandas as pd

    from streams.evaluate import evaluate_customers, evaluate_devices, write

    customer = detector == "customer"
    labels = dict(
        labels_entity_column=labels_entity_column,
        labels_start_column=labels_start_column,
        labels_end_column=labels_end_column,
        lead_min_hours=lead_min_hours if lead_min_hours is not None else (168 if customer else 1),
        lead_max_hours=lead_max_hours if lead_max_hours is not None else (2160 if customer else 48),
        visit_hours=visit_hours if visit_hours is not None else (720 if customer else 24),
        recovery_hours=recovery_hours if recovery_hours is not None else (0 if customer else 72),
    )
    try:
        if customer:
            evaluation = evaluate_customers(
                input_path,
                labels_path,
                time_column=time_column,
                entity_column=entity_column or "customer_id",
                kind_column=kind_column,
                **labels,
            )
        else:
            evaluation = evaluate_devices(
                input_path,
                labels_path,
                time_column=time_column,
                entity_column=entity_column or "device_id",
                value_columns=[c for c in value_columns.split(",") if c],
                error_codes_column=error_codes_column,
                mode_column=mode_column,
                firmware_column=firmware_column,
                **labels,
            )
    except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        _fail(ValueError(str(exc) or type(exc).__name__))
    except (OSError, ImportError) as exc:  # an unreadable file, Parquet without pyarrow
        _fail(exc)
    paths = write(evaluation, output)
    d = evaluation.default
    click.echo(evaluation.table())
    click.echo(
        f"\ndefault: recall {d.recall} ({d.caught} of {d.labels} labels), "
        f"{d.false_visits_per_device_quarter} false visits per {evaluation.unit}-quarter "
        f"({d.false_visits} of {d.visits} visits over {d.device_quarters} device-quarters), "
        f"lead hours {d.lead_quantiles() or '-'}; alerts inside labelled spans {d.alerts_inside}, "
        f"outside {d.alerts_outside}"
    )
    summary = evaluation.summary
    click.echo(
        json.dumps(
            {k: summary[k] for k in ("rows", "entities", "skipped", "notes", "labels")}
            | {k: str(p) for k, p in paths.items()},
            indent=2,
        )
    )


# --- lifetime value ----------------------------------------------------------------------------


@main.group()
def clv() -> None:
    """Customer lifetime value (BG/NBD + Gamma-Gamma)."""


@clv.command("fit")
@click.option("--input", "input_path", type=click.Path(path_type=Path), required=True)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["transactions", "summary"]),
    default="transactions",
    show_default=True,
    help="transactions: one row per purchase (the CDNOW master or sample text layout, or a "
    "CSV/Parquet file with id, date and amount columns); summary: CSV with x,t_x,T[,zbar|m] "
    "in weeks.",
)
@click.option("--id-column", default=None, help="Customer id column [customer_id].")
@click.option("--date-column", default=None, help="Purchase date column [date].")
@click.option("--amount-column", default=None, help="Amount column [amount].")
@click.option("--date-format", default=None, help="strftime format of the dates (default ISO).")
@click.option(
    "--map",
    "mapping_path",
    type=click.Path(path_type=Path),
    default=None,
    help="YAML with id, date, amount, date_format (the options above win).",
)
@click.option(
    "--calibration-end",
    default=None,
    help="Last day of the calibration period (transactions; default: last date).",
)
@click.option(
    "--holdout-end",
    default=None,
    help="Last day of a holdout after --calibration-end: print the holdout check (predicted "
    "vs actual repeat purchases by calibration frequency).",
)
@click.option(
    "--output",
    type=click.Path(path_type=Path),
    default=None,
    help="Write per-customer P(alive), expected purchases and CLV (.csv or .parquet).",
)
def clv_fit(
    input_path: Path,
    fmt: str,
    id_column: str | None,
    date_column: str | None,
    amount_column: str | None,
    date_format: str | None,
    mapping_path: Path | None,
    calibration_end: str | None,
    holdout_end: str | None,
    output: Path | None,
) -> None:
    """Fit BG/NBD and Gamma-Gamma; print their parameters and log-likelihoods as JSON.

    Amounts: refunds are netted per customer-day; a zero-value day counts as a purchase
    but not for spend; a negative day (a refund of an earlier order) is not a purchase
    (counted in "amount_policy"). A fit that did not converge is an error, not a result."""
    try:
        columns = {"id_column": "customer_id", "date_column": "date", "amount_column": "amount"}
        if mapping_path is not None:
            from models.clv_io import read_mapping

            columns |= read_mapping(mapping_path)
        given = {
            "id_column": id_column,
            "date_column": date_column,
            "amount_column": amount_column,
            "date_format": date_format,
        }
        columns |= {k: v for k, v in given.items() if v is not None}
        out = _clv_fit(
            input_path,
            fmt,
            columns["id_column"],
            columns["date_column"],
            columns["amount_column"],
            columns.get("date_format"),
            calibration_end,
            holdout_end,
            output,
        )
    except (ValueError, RuntimeError) as exc:  # input, convergence and too-little-data errors
        _fail(exc)
    except Exception as exc:  # never a traceback for a user's file (issue 16)
        _fail(RuntimeError(f"unexpected {type(exc).__name__} on {input_path}: {exc}"))
    check = out.get("holdout_check")
    click.echo(json.dumps(out, indent=2))
    if check is not None:
        click.echo(
            "holdout check (Fader, Hardie & Lee 2005): mean repeat purchases per customer in "
            "the holdout, by calibration frequency x",
            err=True,
        )
        click.echo(f"{'x':>10s} {'customers':>10s} {'actual':>9s} {'predicted':>10s}", err=True)
        for row in check:
            click.echo(
                f"{row['x']:>10s} {row['customers']:>10d} {row['actual']:>9.3f} "
                f"{row['predicted']:>10.3f}",
                err=True,
            )


def _date_option(value: str | None, name: str) -> date_type | None:
    if value is None:
        return None
    try:
        return date_type.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{name} {value!r} is not a date (YYYY-MM-DD)") from None


def _clv_fit(
    input_path: Path,
    fmt: str,
    id_column: str,
    date_column: str,
    amount_column: str,
    date_format: str | None,
    calibration_end: str | None,
    holdout_end: str | None,
    output: Path | None,
) -> dict:
    import pandas as pd

    from models.clv import (
        BetaGeoNBD,
        GammaGamma,
        Summary,
        customer_value,
        holdout_check,
        summarize,
    )
    from models.clv_io import read_transactions

    end = _date_option(calibration_end, "--calibration-end")
    hold = _date_option(holdout_end, "--holdout-end")
    if fmt == "summary":
        if hold is not None:
            raise ValueError("--holdout-end needs --format transactions (dates, not a summary)")
        from models.tables import TableError, TableMapping, _frame

        try:
            frame = _frame(input_path, TableMapping(), [])
        except TableError as exc:
            raise ValueError(str(exc)) from None
        frame = frame.rename(columns={"zbar": "m"})
        missing = {"x", "t_x", "T"} - set(frame.columns)
        if missing:
            raise ValueError(
                f"{input_path} line 1: --format summary needs columns x, t_x, T; missing "
                f"{sorted(missing)} (columns: {', '.join(frame.columns)})"
            )
        for column in [c for c in ("x", "t_x", "T", "m") if c in frame.columns]:
            numbers = pd.to_numeric(frame[column], errors="coerce")
            if numbers.isna().any():
                line = int(frame.index[numbers.isna()][0])
                raise ValueError(
                    f"{input_path} line {line}, column {column!r}: "
                    f"{frame.loc[line, column]!r} is not a number"
                )
            frame[column] = numbers
        if "m" not in frame:
            frame["m"] = 0.0
        frame["x_spend"] = frame["x"].where(frame["m"] > 0, 0)
        summary = Summary(frame.set_index("ID") if "ID" in frame else frame)
    else:
        tx = read_transactions(
            input_path,
            id_column=id_column,
            date_column=date_column,
            amount_column=amount_column,
            date_format=date_format,
        )
        end = end or tx["date"].max().date()
        if hold is not None and hold <= end:
            raise ValueError(f"--holdout-end {hold} must be after the calibration end {end}")
        summary = summarize(tx, end, hold)
        if summary.frame.empty:
            raise ValueError(
                f"{input_path}: no customer bought on or before the calibration end {end}"
            )
    bg = BetaGeoNBD().fit(summary.X)
    out: dict = {
        "customers": len(summary.frame),
        "bgnbd": {
            "r": bg.r_,
            "alpha": bg.alpha_,
            "a": bg.a_,
            "b": bg.b_,
            "log_likelihood": bg.log_likelihood_,
        },
    }
    if summary.counts:
        out["amount_policy"] = summary.counts
    gg = None
    if (summary.frame["m"] > 0).any():
        spend = summary.spend
        gg = GammaGamma().fit(spend.to_numpy(float))
        out["gamma_gamma"] = {
            "p": gg.p_,
            "q": gg.q_,
            "gamma": gg.v_,
            "log_likelihood": gg.log_likelihood_,
            "customers": len(spend),
        }
    if hold is not None:
        weeks = (hold - end).days / 7
        check = holdout_check(bg, summary, weeks)
        out["holdout_check"] = check.to_dict("records")
        out["holdout"] = {
            "weeks": round(weeks, 2),
            "actual_repeat_purchases": float(check["actual"].iloc[-1]),
            "predicted_repeat_purchases": float(check["predicted"].iloc[-1]),
        }
    if output is not None:
        if gg is None:
            raise ValueError("--output needs amounts (a transaction file or a summary with m)")
        values = customer_value(bg, gg, summary)
        values.insert(0, "x", summary.frame["x"])
        values = values.reset_index().rename(columns={"index": "customer_id"})
        output.parent.mkdir(parents=True, exist_ok=True)
        tmp = output.with_name(f".{output.name}.tmp")
        if output.suffix.lower() in (".parquet", ".pq"):
            values.to_parquet(tmp, index=False)
        else:
            values.to_csv(tmp, index=False)
        tmp.replace(output)
        out["output"] = {"path": str(output), "customers": len(values)}
    return out


# --- outreach ----------------------------------------------------------------------------------


@main.group()
def outreach() -> None:
    """The outreach task service: web pages, REST API, tokens, webhook."""


def _outreach_store(settings: Settings):  # type: ignore[no-untyped-def]
    """The task store, its schema brought up first: these commands may be the first to run."""
    from outreach.migrate import migrate
    from outreach.store import TaskStore

    migrate(settings.database_url)
    return TaskStore(settings.database_url)


@outreach.command("migrate")
@click.option("--revision", default="head", show_default=True, help="Alembic revision.")
@click.pass_obj
def outreach_migrate(settings: Settings, revision: str) -> None:
    """Bring the outreach database to the latest schema (the service also does it on start-up,
    once; opening the store never does)."""
    from outreach.migrate import migrate

    migrate(settings.database_url, revision)
    click.echo(f"outreach database at revision {revision}")


@outreach.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8088, show_default=True)
@click.pass_obj
def outreach_serve(settings: Settings, host: str, port: int) -> None:
    """Serve the field-service board, retention list, support queue and the API."""
    import uvicorn

    from outreach.api.main import create_app
    from outreach.config import OutreachSettings

    try:
        app = create_app(OutreachSettings.from_env(settings))
    except ValueError as exc:
        _fail(exc)
    from forewarn.logs import logging_config

    click.echo(f"outreach on http://{host}:{port}/ (API docs at /docs)")
    uvicorn.run(app, host=host, port=port, log_config=logging_config())


@outreach.command("background")
@click.pass_obj
def outreach_background(settings: Settings) -> None:
    """Run escalation and webhook delivery (and nothing else) until stopped: the one place they
    run when the web replicas are started with FOREWARN_OUTREACH_BACKGROUND=0."""
    import signal
    import threading

    from outreach.background import run
    from outreach.config import OutreachSettings
    from outreach.migrate import migrate

    try:
        outreach_settings = OutreachSettings.from_env(settings)
    except ValueError as exc:
        _fail(exc)
    migrate(settings.database_url)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    click.echo("outreach background loops running (Ctrl-C stops them)")
    run(outreach_settings, stop)


# A group, so that `token revoke` can exist; `token --role R --name N` still creates one.
@outreach.group("token", invoke_without_command=True)
@click.option(
    "--role",
    type=click.Choice(["technician", "dispatcher", "retention", "support", "admin"]),
)
@click.option("--name", help="Who the token is for (shown in task history).")
@click.pass_context
def outreach_token(ctx: click.Context, role: str | None, name: str | None) -> None:
    """Create an API and login token; it is printed once and stored only as a hash. It
    expires after FOREWARN_TOKEN_TTL_DAYS (90 by default)."""
    if ctx.invoked_subcommand is not None:
        return
    if not role or not name:
        raise click.UsageError("creating a token needs --role and --name")
    click.echo(_outreach_store(ctx.obj).create_token(name, role))


@outreach_token.command("revoke")
@click.option("--name", help="Revoke every token of this name.")
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False, allow_dash=True),
    help="Revoke the token written in this file ('-': standard input), e.g. a leaked one.",
)
@click.pass_obj
def outreach_token_revoke(settings: Settings, name: str | None, token_file: str | None) -> None:
    """Revoke tokens now, and end the page sessions opened with them."""
    if (name is None) == (token_file is None):
        raise click.UsageError("give exactly one of --name or --token-file")
    raw = None
    if token_file is not None:
        with click.open_file(token_file) as fh:
            raw = fh.read().strip()
    revoked = _outreach_store(settings).revoke_tokens(name=name, raw=raw)
    click.echo(f"revoked {revoked} token{'s' if revoked != 1 else ''}")
    if not revoked:
        raise SystemExit(1)


@outreach.command("import-customers")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.pass_obj
def outreach_import(settings: Settings, path: Path) -> None:
    """Load customers from a CSV: customer_id, and any of territory, value_tier,
    preferred_channel (routing) and name, phone, email, address (contact details)."""
    import csv

    with path.open() as fh:
        rows = list(csv.DictReader(fh))
    click.echo(f"imported {_outreach_store(settings).import_customers(rows)} customers")


@outreach.command("escalate")
@click.pass_obj
def outreach_escalate(settings: Settings) -> None:
    """Raise the priority of tasks past their due time and expire those left too long after
    it (the background loops do both every minute)."""
    store = _outreach_store(settings)
    escalated, expired = store.escalate_overdue(), store.expire_stale()
    click.echo(f"escalated {len(escalated)} tasks, expired {len(expired)}")


# --- worker and demo ---------------------------------------------------------------------------


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("faust_args", nargs=-1, type=click.UNPROCESSED)
@click.pass_obj
def worker(settings: Settings, faust_args: tuple[str, ...]) -> None:
    """Run a Faust worker (extra arguments go to ``faust worker``)."""
    from console.stack import worker_env

    args = [sys.executable, "-m", "streams", "worker", "-l", "info", *faust_args]
    os.execvpe(args[0], args, worker_env(settings))


@main.command()
@click.option("--customers", default=300, show_default=True)
@click.option("--days", default=30, show_default=True)
@click.option("--seed", default=7, show_default=True)
@click.option(
    "--keep-running", is_flag=True, help="Leave Kafka, the worker and the outreach service running."
)
@click.option("--outreach-port", default=8088, show_default=True)
@click.option(
    "--fresh/--reuse",
    default=True,
    show_default=True,
    help="Start from an empty demo folder (topics, lake, store) or reuse it.",
)
@click.pass_obj
def demo(
    settings: Settings,
    customers: int,
    days: int,
    seed: int,
    keep_running: bool,
    outreach_port: int,
    fresh: bool,
) -> None:
    """Kafka + simulator + Faust worker + outreach service, then a report of what was caught."""
    from console.demo import run_demo

    try:
        run_demo(
            settings,
            customers=customers,
            days=days,
            seed=seed,
            keep_running=keep_running,
            fresh=fresh,
            outreach_port=outreach_port,
        )
    except RuntimeError as exc:
        _fail(exc)


if __name__ == "__main__":
    main()
