"""The ``forewarn`` command line: local stack, simulator, worker, demo."""

from __future__ import annotations

import asyncio
import csv
import json
import os
import re
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from datetime import date as date_type
from pathlib import Path

import click

from forewarn.events import PARTITIONS
from forewarn.settings import Settings, keep_files_private


class InputError(click.ClickException):
    """Bad input from the user (a path, a file's columns, a port): one line, exit code 2."""

    exit_code = 2


class ForewarnGroup(click.Group):
    """Every error a user can cause is one line on stderr with the fix, and exit code 2; a
    traceback is left for our own bugs (issue 18)."""

    def main(self, *args, standalone_mode: bool = True, **kwargs):  # type: ignore[no-untyped-def,override]
        try:
            rv = super().main(*args, standalone_mode=False, **kwargs)
        except click.UsageError as exc:
            # Named as users type it, however it was launched (python -m, a test runner).
            names, ctx = [], exc.ctx
            while ctx is not None and ctx.parent is not None:
                names.insert(0, ctx.info_name or "")
                ctx = ctx.parent
            where = " ".join(["forewarn", *names])
            click.echo(
                f"{where}: {_one_line(exc.format_message())} (see `{where} --help`)", err=True
            )
            sys.exit(2)
        except click.ClickException as exc:
            click.echo(f"forewarn: {_one_line(exc.format_message())}", err=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("forewarn: stopped", err=True)
            sys.exit(130)
        except OSError as exc:
            # Files and folders the user named: missing, a folder for a file, not allowed.
            if exc.filename is None:
                raise
            click.echo(f"forewarn: {exc.strerror or exc}: {exc.filename}", err=True)
            sys.exit(2)
        except Exception as exc:
            # The outreach database (FOREWARN_DATABASE_URL) cannot be opened, or an Alembic
            # revision that does not exist: the user's to fix, named without a traceback.
            kind = f"{type(exc).__module__}.{type(exc).__name__}"
            if kind not in USER_DATABASE_ERRORS:
                raise
            reason = _one_line(str(getattr(exc, "orig", None) or exc)).split(" (Background")[0]
            if kind.startswith("alembic"):
                click.echo(
                    f"forewarn: {reason}; --revision takes one of outreach/migrations' "
                    "revisions, or head (the default)",
                    err=True,
                )
                sys.exit(2)
            click.echo(
                f"forewarn: the outreach database refused: {reason}; check "
                "FOREWARN_DATABASE_URL (default: SQLite in FOREWARN_HOME) and that its server runs",
                err=True,
            )
            sys.exit(2)
        if not standalone_mode:
            return rv
        sys.exit(rv if isinstance(rv, int) else 0)


USER_DATABASE_ERRORS = {
    "sqlalchemy.exc.OperationalError",
    "sqlalchemy.exc.ArgumentError",
    "sqlalchemy.exc.NoSuchModuleError",
    "alembic.util.exc.CommandError",
}


def _one_line(text: str) -> str:
    return " ".join(text.split())


@click.group(cls=ForewarnGroup)
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
    try:
        settings = Settings()
    except ValueError as exc:
        raise InputError(str(exc)) from None
    if home is not None:
        settings = settings.with_home(home)
    if settings.home.exists() and not settings.home.is_dir():
        raise InputError(
            f"FOREWARN_HOME (--home) is {settings.home}, a file; it must be a folder: pass "
            "another --home"
        )
    if bootstrap is None and "FOREWARN_KAFKA_BOOTSTRAP" not in os.environ:
        # One home: the stack running from it (the demo's broker may use another port).
        from console import home as stack

        kafka = stack.running(settings.home).get("kafka")
        if kafka and kafka.get("bootstrap"):
            bootstrap = kafka["bootstrap"]
    if bootstrap is not None:
        settings = replace(settings, kafka_bootstrap=bootstrap)
    host, _, port = settings.kafka_bootstrap.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InputError(
            f"the Kafka address is {settings.kafka_bootstrap!r}; expected host:port, such as "
            "127.0.0.1:9092 (--bootstrap or FOREWARN_KAFKA_BOOTSTRAP)"
        )
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
    from console import home as stack
    from console.kafka.local import KafkaError
    from forewarn.kafka.admin import ensure_topics

    broker = _broker(settings)
    try:
        broker.start()
    except KafkaError as exc:
        if "in use" in str(exc):
            other = stack.broker_on_port(broker.port)
            if other:
                raise InputError(
                    f"port {broker.port} is taken by another Forewarn broker (pid {other['pid']}, "
                    f"data {other['home']}): use it with --home {other['forewarn_home']}, stop "
                    f"it with `forewarn --home {other['forewarn_home']} stop`, or pick another "
                    "port (--bootstrap 127.0.0.1:<port>)"
                ) from None
            raise InputError(str(exc)) from None
        _fail(exc)
    stack.record(
        settings.home,
        "kafka",
        pid=broker.pid() or 0,
        bootstrap=broker.bootstrap,
        log=str(broker.log_file),
    )
    created = asyncio.run(ensure_topics(broker.bootstrap))
    click.echo(f"kafka ready on {broker.bootstrap} (pid {broker.pid()}, data {broker.home})")
    if created:
        click.echo(f"created topics: {', '.join(created)}")


@kafka.command("stop")
@click.pass_obj
def kafka_stop(settings: Settings) -> None:
    """Stop the broker cleanly."""
    from console import home as stack

    stopped = _broker(settings).stop()
    stack.forget(settings.home, "kafka")
    click.echo("kafka stopped" if stopped else "kafka was not running")


@kafka.command("status")
@click.pass_obj
def kafka_status(settings: Settings) -> None:
    """Print whether the broker runs and answers (exit code 1 if not ready)."""
    status = _broker(settings).status()
    click.echo(json.dumps(status, indent=2))
    sys.exit(0 if status["ready"] else 1)


@main.command()
@click.option("--partitions", default=PARTITIONS, show_default=True, type=click.IntRange(min=1))
@click.option("--replication", default=1, show_default=True, type=click.IntRange(min=1))
@click.pass_obj
def topics(settings: Settings, partitions: int, replication: int) -> None:
    """Create Forewarn's topics on any cluster (before the first worker starts) and list them
    with their partitions and cleanup policy, created or found."""
    from forewarn.kafka.admin import TOPIC_CONFIGS, ensure_topics

    created = _kafka_call(
        settings, ensure_topics(settings.kafka_bootstrap, partitions, replication)
    )
    found = _kafka_call(settings, _describe_topics(settings, list(TOPIC_CONFIGS)))
    click.echo(f"topics on {settings.kafka_bootstrap}:")
    for name, config in TOPIC_CONFIGS.items():
        click.echo(
            f"  {name:<18} {found.get(name, '?'):>3} partition(s)  "
            f"{config.get('cleanup.policy', 'delete'):<8} "
            f"{'created now' if name in created else 'existed'}"
        )


def _kafka_call(settings: Settings, coroutine):  # type: ignore[no-untyped-def]
    """Run a Kafka client call; an unreachable broker is the user's to fix, not a traceback."""
    from aiokafka.errors import KafkaError

    try:
        return asyncio.run(coroutine)
    except KafkaError as exc:
        raise InputError(
            f"cannot reach Kafka at {settings.kafka_bootstrap} ({type(exc).__name__}): start "
            "the local one with `forewarn kafka start`, or point --bootstrap / "
            "FOREWARN_KAFKA_BOOTSTRAP at yours"
        ) from None


async def _describe_topics(settings: Settings, names: list[str]) -> dict[str, int]:
    """Partitions per topic, as the cluster reports them."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap, **settings.kafka_client_options()
    )
    await admin.start()
    try:
        described = await admin.describe_topics(names)
        return {t["topic"]: len(t.get("partitions") or []) for t in described}
    finally:
        await admin.close()


# --- simulator ---------------------------------------------------------------------------------


@main.command()
@click.option("--customers", default=300, show_default=True, type=click.IntRange(min=1))
@click.option("--days", default=30, show_default=True, type=click.IntRange(min=1))
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
    type=click.IntRange(min=1),
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
@click.option(
    "--rate",
    default=0.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Events/s; 0 = as fast as possible.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
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
    try:
        first_day = datetime.fromisoformat(start_date).replace(tzinfo=UTC)
    except ValueError:
        raise click.BadParameter(
            f"{start_date!r} is not a date; expected YYYY-MM-DD", param_hint="--start"
        ) from None
    world = build_world(
        n_customers=customers,
        days=days,
        seed=seed,
        start=first_day,
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

        _kafka_call(settings, ensure_topics(settings.kafka_bootstrap))
        n = _kafka_call(
            settings,
            produce(
                world_events(world),
                settings.kafka_bootstrap,
                rate=rate,
                total=estimate,
                progress=not quiet,
            ),
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
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
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

    _check_history(input_path, detector, time_column, entity_column, kind_column)
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
    except (ValueError, KeyError) as exc:
        raise InputError(f"cannot replay {input_path}: {exc}") from None
    write_alerts(result.alerts, output)
    click.echo(json.dumps({**result.summary(), "output": str(output)}, indent=2))


# --- model registry ----------------------------------------------------------------------------


@main.group()
@click.option("--model", "model_name", default="churn", show_default=True)
@click.pass_context
def models(ctx: click.Context, model_name: str) -> None:
    """The model registry: versions, stages (candidate, champion, archived), history."""
    from forewarn.registry import Registry

    if not re.fullmatch(r"[a-z][a-z0-9_-]{0,63}", model_name):
        raise InputError(
            f"--model {model_name!r} is not a model name (lower-case letters, digits, - and _; "
            "e.g. churn)"
        )
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
        raise InputError(_one_line(str(exc))) from None
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
        raise InputError(_one_line(str(exc))) from None
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
        raise InputError(_one_line(str(exc))) from None
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
        raise InputError(_one_line(str(exc))) from None
    except Exception as exc:  # never a traceback for a user's file (issue 16)
        raise InputError(
            _one_line(f"unexpected {type(exc).__name__} on {table_path}: {exc}")
        ) from None
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


# --- importing a team's own files -------------------------------------------------------------

IMPORT_KINDS = ("telemetry", "orders", "tickets", "maintenance", "customers")


@main.command("import")
@click.argument("kind", type=click.Choice(IMPORT_KINDS))
@click.argument("file", type=click.Path(path_type=Path))
@click.option(
    "--map",
    "mapping_path",
    type=click.Path(path_type=Path),
    required=True,
    help="YAML mapping of your columns onto the contract (docs/import.md has examples).",
)
@click.option(
    "--to",
    "target",
    type=click.Choice(["lake", "kafka"]),
    default="lake",
    show_default=True,
    help="Backfill the lake, or produce to Kafka for the running worker.",
)
@click.option("--dry-run", is_flag=True, help="Map and report; write nothing.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.pass_obj
def import_file(
    settings: Settings,
    kind: str,
    file: Path,
    mapping_path: Path,
    target: str,
    dry_run: bool,
    quiet: bool,
) -> None:
    """Import your own telemetry, orders, tickets, maintenance visits (a field-service log)
    or customers (a CRM export) from a CSV or Parquet file: each row mapped onto Forewarn's
    contract and validated as the stream validates; rows that do not map are listed with line,
    column and reason, and kept in <home>/imports/<file>.rejected.csv."""
    from forewarn.events import (
        CustomerAttributes,
        DeviceTelemetry,
        MaintenanceVisit,
        Order,
        Ticket,
    )
    from forewarn.publish import produce, write_lake
    from importer.customers import CustomerMapping, map_customers
    from importer.events import event_mapping, events_of
    from importer.mapping import RejectLog
    from models.tables import TableError

    if not file.is_file():
        raise InputError(f"{file}: no such file")
    contract = {
        "telemetry": DeviceTelemetry,
        "orders": Order,
        "tickets": Ticket,
        "maintenance": MaintenanceVisit,
        "customers": CustomerAttributes,
    }[kind]
    rejects = RejectLog(file, settings.home / "imports" / f"{file.stem}.rejected.csv")
    notes: list[str] = []
    total = None
    try:
        if kind == "customers":  # typed by whole columns: read whole (a CRM export)
            mapped = map_customers(file, CustomerMapping.from_yaml(mapping_path))
            for rejected in mapped.rejected:
                rejects.add(rejected)
            notes, events, total = mapped.notes, iter(mapped.events), len(mapped.events)
        else:  # a history: mapped row by row as it is written, whatever its length
            events = events_of(file, event_mapping(mapping_path, contract), rejects.add, notes)
        for note in notes:
            click.echo(f"note: {note}")
        if dry_run:
            written = sum(1 for _ in events)
        elif target == "lake":
            written = write_lake(events, settings.lake_dir, total=total, progress=not quiet)
        else:
            from forewarn.kafka.admin import ensure_topics

            _kafka_call(settings, ensure_topics(settings.kafka_bootstrap))
            written = _kafka_call(
                settings,
                produce(events, settings.kafka_bootstrap, total=total, progress=not quiet),
            )
    except (TableError, ValueError) as exc:  # MappingError is a ValueError
        raise InputError(_one_line(str(exc))) from None
    finally:
        rejects.close()
    rows = written + rejects.count
    if rejects.count:
        click.echo(f"{rejects.count} of {rows} rows do not map (all in {rejects.path}):")
        for r in rejects.first:
            where = f", column {r.column!r}" if r.column else ""
            click.echo(f"  {file} line {r.line}{where}: {r.reason}")
    if not written:
        raise InputError(f"no row of {file} maps onto {kind}; nothing imported")
    if dry_run:
        click.echo(f"{written} of {rows} rows map onto {kind}; dry run, nothing written")
    elif target == "lake":
        click.echo(f"imported {written} of {rows} rows of {file} into {settings.lake_dir}")
    else:
        click.echo(
            f"produced {written} of {rows} rows of {file} to {contract.topic} "
            f"on {settings.kafka_bootstrap}"
        )


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
        raise InputError(_one_line(str(exc) or type(exc).__name__)) from None
    except (OSError, ImportError) as exc:  # an unreadable file, Parquet without pyarrow
        raise InputError(_one_line(str(exc))) from None
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


def _check_history(
    path: Path, detector: str, time_column: str, entity_column: str, kind_column: str
) -> None:
    """Refuse a history the chosen detector cannot read, naming what the file holds: the
    device detector on a customer history found 36 "silence" faults and exited 0 (issue 18)."""
    import pandas as pd

    if path.is_dir():
        raise InputError(f"{path} is a folder: give the history file (CSV or Parquet)")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            head = pd.read_parquet(path).head(2000)
        else:
            head = pd.read_csv(path, nrows=2000)
    except (ValueError, UnicodeDecodeError, OSError) as exc:
        kind = "Parquet" if path.suffix.lower() in (".parquet", ".pq") else "CSV"
        raise InputError(f"{path} is not a readable {kind} file ({_one_line(str(exc))})") from None
    columns = list(head.columns)
    missing = [c for c in (time_column, entity_column) if c not in columns]
    if missing:
        raise InputError(
            f"{path} has no column {', '.join(map(repr, missing))} (it has {', '.join(columns)}): "
            "name the right ones with --time-column and --entity-column"
        )
    kinds = set(head[kind_column].dropna().astype(str)) if kind_column in columns else set()
    customer_kinds = {"order", "ticket", "device_fault"}
    if detector == "device" and kinds & customer_kinds:
        raise InputError(
            f"{path} looks like a customer history (its {kind_column!r} column holds "
            f"{', '.join(sorted(kinds & customer_kinds))}): replay it with --detector customer"
        )
    if detector == "customer" and not kinds & customer_kinds:
        raise InputError(
            f"{path} has no {kind_column!r} column saying order, ticket or device_fault per "
            "row, so it is not a customer history: name that column with --kind-column, or "
            "replay device readings with --detector device"
        )


# --- lifetime value ----------------------------------------------------------------------------


@main.group()
def clv() -> None:
    """Customer lifetime value (BG/NBD + Gamma-Gamma)."""


@clv.command("fit")
@click.option(
    "--input",
    "input_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
)
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
        raise InputError(_one_line(str(exc))) from None
    except Exception as exc:  # never a traceback for a user's file (issue 16)
        raise InputError(
            _one_line(f"unexpected {type(exc).__name__} on {input_path}: {exc}")
        ) from None
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
        from models.tables import TableError, TableMapping, read_cells

        try:
            frame = read_cells(input_path, TableMapping(), [])
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

    _sqlite_folder(settings)
    migrate(settings.database_url)
    return TaskStore(settings.database_url)


def _sqlite_folder(settings: Settings) -> None:
    """An embedded store's folder (a new FOREWARN_HOME) exists before SQLite opens the file."""
    prefix = "sqlite:///"
    if settings.database_url.startswith(prefix):
        Path(settings.database_url[len(prefix) :]).parent.mkdir(parents=True, exist_ok=True)


@outreach.command("migrate")
@click.option("--revision", default="head", show_default=True, help="Alembic revision.")
@click.pass_obj
def outreach_migrate(settings: Settings, revision: str) -> None:
    """Bring the outreach database to the latest schema (the service also does it on start-up,
    once; opening the store never does)."""
    from outreach.migrate import migrate

    _sqlite_folder(settings)
    migrate(settings.database_url, revision)
    click.echo(f"outreach database at revision {revision}")


@outreach.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8088, show_default=True, type=click.IntRange(1, 65535))
@click.pass_obj
def outreach_serve(settings: Settings, host: str, port: int) -> None:
    """Serve the field-service board, retention list, support queue and the API."""
    import uvicorn

    from console import home as stack
    from console.kafka.local import port_free
    from outreach.api.main import create_app
    from outreach.config import OutreachSettings

    running = stack.running(settings.home).get("outreach")
    if running and running.get("url", "").endswith(f":{port}"):
        raise InputError(
            f"the outreach service of {settings.home} already runs on {running['url']}/ (pid "
            f"{running['pid']}); use it, or stop the stack with `forewarn stop`"
        )
    if host in ("127.0.0.1", "localhost") and not port_free(port, "127.0.0.1"):
        raise InputError(f"port {port} is in use by another program: pass --port <another>")
    _sqlite_folder(settings)
    try:
        app = create_app(OutreachSettings.from_env(settings))
    except ValueError as exc:
        raise InputError(str(exc)) from None
    from forewarn.logs import logging_config

    click.echo(f"outreach on http://{host}:{port}/ (API docs at /docs; data {settings.home})")
    stack.record(
        settings.home,
        "outreach",
        pid=os.getpid(),
        url=f"http://{host}:{port}",
        health=f"http://{host}:{port}/healthz",
        log="stdout",
    )
    try:
        uvicorn.run(app, host=host, port=port, log_config=logging_config())
    finally:
        stack.forget(settings.home, "outreach")


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
    _sqlite_folder(settings)
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
    type=click.Path(exists=True, dir_okay=False, allow_dash=True),
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
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.pass_obj
def outreach_import(settings: Settings, path: Path) -> None:
    """Load customers from a CSV: customer_id, and any of territory, value_tier,
    preferred_channel (routing) and name, phone, email, address (contact details)."""

    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        columns = reader.fieldnames or []
        if "customer_id" not in columns:
            raise InputError(
                f"{path} has no customer_id column (it has {', '.join(columns) or 'no header'}); "
                "expected a header customer_id,territory,value_tier,preferred_channel (only "
                "customer_id is required)"
            )
        rows = list(reader)
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
@click.option("--customers", default=300, show_default=True, type=click.IntRange(min=10))
@click.option(
    "--days", default=30, show_default=True, type=click.IntRange(min=1), help="Days streamed."
)
@click.option(
    "--history-days",
    default=60,
    show_default=True,
    type=click.IntRange(min=0),
    help="Days before the stream backfilled straight to the lake (the churn model's labels "
    "need 30 days after a cut-off, so the nightly needs about 60).",
)
@click.option("--seed", default=7, show_default=True)
@click.option(
    "--keep-running", is_flag=True, help="Leave Kafka, the worker and the outreach service running."
)
@click.option("--outreach-port", default=8088, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--fresh/--reuse",
    default=True,
    show_default=True,
    help="Start from an empty home (broker data, lake, store, models; Airflow's database "
    "stays) or reuse it.",
)
@click.option(
    "--restart", is_flag=True, help="Stop a stack running from this home first (else: refuse)."
)
@click.option(
    "--nightly/--no-nightly",
    default=True,
    show_default=True,
    help="Run the nightly DAG in Airflow after the stream (needs .venv/airflow).",
)
@click.pass_obj
def demo(
    settings: Settings,
    customers: int,
    days: int,
    history_days: int,
    seed: int,
    keep_running: bool,
    outreach_port: int,
    fresh: bool,
    restart: bool,
    nightly: bool,
) -> None:
    """The whole product on this machine: Kafka, the simulator (history to the lake, the last
    days streamed), the Faust worker, the nightly DAG in Airflow, the outreach service, and a
    report of what was caught and how early."""
    from console.airflow import AirflowError
    from console.demo import DemoError, run_demo
    from console.home import StackRunning
    from console.kafka.local import KafkaError

    if nightly and history_days < 45:
        raise click.BadParameter(
            f"{history_days} days of history cannot label churn cut-offs (30 days each): "
            "use at least 45, or --no-nightly",
            param_hint="--history-days",
        )
    try:
        run_demo(
            settings,
            customers=customers,
            days=days,
            history_days=history_days,
            seed=seed,
            keep_running=keep_running,
            fresh=fresh,
            outreach_port=outreach_port,
            nightly=nightly,
            restart=restart,
        )
    except (StackRunning, DemoError) as exc:
        raise InputError(str(exc)) from None
    except (KafkaError, AirflowError) as exc:
        _fail(exc)


# --- one home: what runs, stop it, Airflow -------------------------------------------------------


@main.command()
@click.pass_obj
def status(settings: Settings) -> None:
    """What runs from this home, where (pids, ports, URLs, logs); exit code 1 if nothing."""
    from console import home as stack

    recorded = stack.read(settings.home)
    click.echo(f"home {settings.home.resolve()}")
    if not recorded:
        click.echo("  nothing runs from here (start it with `make demo` or `forewarn demo`)")
        sys.exit(1)
    live = 0
    for part, entry in sorted(recorded.items(), key=lambda kv: _order(kv[0])):
        up = stack.alive(entry)
        live += up
        where = entry.get("bootstrap") or entry.get("url") or entry.get("metrics") or ""
        state = ("running" if _answers(entry) else "silent ") if up else "GONE   "
        click.echo(
            f"  {part:<9} {state} pid {entry['pid']:<8} {where}"
            + (f"  log {entry['log']}" if entry.get("log") else "")
        )
    if live < len(recorded):
        click.echo(
            "  parts marked GONE were killed without `forewarn stop`; `forewarn stop` forgets "
            "them (a new demo does too)"
        )
    sys.exit(0 if live else 1)


def _answers(entry: dict) -> bool:
    """Whether a live part answers where it says it is (broker: a port that accepts; services:
    their health endpoint); 'silent' means alive but not answering (starting, or stuck)."""
    import socket

    import httpx

    if entry.get("bootstrap"):
        host, _, port = entry["bootstrap"].rpartition(":")
        try:
            socket.create_connection((host, int(port)), timeout=2).close()
            return True
        except OSError:
            return False
    if not entry.get("health"):
        return True
    try:
        return httpx.get(entry["health"], timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _order(part: str) -> int:
    order = ("kafka", "worker", "outreach", "airflow")
    return order.index(part) if part in order else len(order)


@main.command()
@click.pass_obj
def stop(settings: Settings) -> None:
    """Stop everything running from this home (outreach, Airflow, worker, then Kafka)."""
    from console import home as stack

    stopped = stack.stop(settings.home, say=click.echo)
    # A broker started by `forewarn kafka start` before it was recorded.
    if "kafka" not in stopped and _broker(settings).stop():
        stopped.append("kafka")
    click.echo(
        f"stopped {', '.join(stopped)}" if stopped else f"nothing was running from {settings.home}"
    )


@main.command("airflow")
@click.option(
    "--port",
    default=8080,
    show_default=True,
    type=click.IntRange(1, 65535),
    help="The Airflow UI's port (127.0.0.1 only).",
)
@click.pass_obj
def airflow_cmd(settings: Settings, port: int) -> None:
    """Airflow 3.3 with the nightly DAG and Forewarn's pages, on this home's data, until Ctrl-C
    (docs/nightly.md). Task slots: FOREWARN_AIRFLOW_PARALLELISM (default: one per core)."""
    from console.airflow import AirflowError, serve

    try:
        serve(settings, port=port, say=lambda text: click.echo(f"forewarn airflow: {text}"))
    except AirflowError as exc:
        raise InputError(str(exc)) from None


if __name__ == "__main__":
    main()
