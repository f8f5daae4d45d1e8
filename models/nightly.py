"""The nightly pipeline's steps as plain functions; ``dags/nightly.py`` only wires them.

Every step works on one logical day ``day`` (the DAG's data interval start), reads the lake
up to the end of that day, writes its output under ``<out>/<step>/date=<day>/`` atomically and
returns the path (URIs travel through XCom, never data). Rerunning a day overwrites the same
files and upserts the same tasks, so reruns and backfills are idempotent.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from forewarn.events import Alert, CustomerValue, ModelUpdated, retention_key
from forewarn.lake import read_events, write_parquet_atomic
from forewarn.settings import NIGHTLY_SHARD_CUSTOMERS, RETENTION_CAPACITY
from models.features import CHUNK_CUSTOMERS

#: Customers per mapped feature task (FOREWARN_NIGHTLY_SHARD_CUSTOMERS, forewarn.settings).
SHARD_CUSTOMERS = NIGHTLY_SHARD_CUSTOMERS

log = logging.getLogger(__name__)

VOLUME_DAYS = 7
TIER_SHARES = (("platinum", 0.05), ("gold", 0.20), ("silver", 0.50))  # cumulative top shares


def day_end(day: date) -> datetime:
    return datetime.combine(day + timedelta(days=1), time(), tzinfo=UTC)


def _out(root: Path, step: str, day: date, name: str) -> Path:
    return Path(root) / step / f"date={day.isoformat()}" / name


def _publish(bootstrap: str | None, events: list[Any]) -> int:
    """Send events to Kafka when a broker is configured (the streams pick them up)."""
    if not bootstrap or not events:
        return 0
    from forewarn.publish import produce

    return asyncio.run(produce(events, bootstrap, progress=False))


# -- 0. the lake's small files, compacted -------------------------------------------------

#: The lake's topics the nightly reads: their days are compacted before it reads them.
NIGHTLY_TOPICS = ("orders", "tickets", "alerts", "customers")


def compact_lake(lake: Path, day: date) -> dict[str, Any]:
    """Compact every day up to ``day`` of the topics the nightly reads that holds more than one
    file (``forewarn.lake.compact``): the stream's files of a day become one, sorted by
    customer. A night compacts the day that ended and the days late events reached since."""
    from forewarn.lake import compact

    done = compact(lake, NIGHTLY_TOPICS, until=day)
    summary = {
        "days": len(done),
        "files": sum(c.files for c in done),
        "rows": sum(c.rows for c in done),
    }
    log.info("lake compacted: %(files)d files of %(days)d topic-days into one each", summary)
    return summary


# -- 1. data-quality gate on the day's raw events -------------------------------------------


def check_raw_events(lake: Path, day: date, gx_dir: Path) -> dict[str, Any]:
    """Validate the day's tickets and orders; volume is judged against the previous days."""
    from expectations.runner import validate

    reports = {}
    for topic, suite in (("tickets", "tickets_day"), ("orders", "orders_day")):
        frame = read_events(lake, topic, start=day, end=day + timedelta(days=1)).to_pandas()
        history = [
            read_events(
                lake,
                topic,
                start=day - timedelta(days=k),
                end=day - timedelta(days=k - 1),
                columns=["event_id"],
            ).num_rows
            for k in range(1, VOLUME_DAYS + 1)
        ]
        history = [n for n in history if n]
        if frame.empty:
            raise _empty_day(lake, topic, day)
        typical = float(np.median(history)) if history else None
        # Daily counts are noisy (Poisson-like): allow 4 standard deviations either way.
        spread = 4 * float(np.sqrt(typical)) if typical else 0.0
        params = {
            "min_rows": max(1, int(min(typical * 0.3, typical - spread))) if typical else 1,
            "max_rows": int(typical * 2 + spread + 10) if typical else 10**9,
        }
        report = validate(frame, suite, gx_dir, params)
        reports[topic] = {
            "rows": len(frame),
            "evaluated": report.evaluated,
            "docs": report.docs_url,
            **params,
        }
    return reports


def _empty_day(lake: Path, topic: str, day: date) -> Exception:
    """The gate's message for a day without data: where it looked, which days there are, and
    what to do (an empty lake failed as "expect_table_row_count_to_be_between: 0", issue 18)."""
    from expectations.runner import DataQualityError

    days = sorted(
        p.name.removeprefix("date=") for p in (Path(lake) / f"topic={topic}").glob("date=*")
    )
    held = f"it holds {days[0]} to {days[-1]}" if days else "it holds no days at all"
    return DataQualityError(
        f"no {topic} for {day} in {Path(lake) / f'topic={topic}' / f'date={day}'} ({held}; "
        f"FOREWARN_HOME or FOREWARN_LAKE_DIR may name another home): run the nightly for a "
        "day the lake has, or fill it (`make demo`, or `forewarn simulate --to lake`)"
    )


# -- 2. features ----------------------------------------------------------------------------


def plan_feature_shards(
    lake: Path, day: date, every_days: int = 7, shard_customers: int = SHARD_CUSTOMERS
) -> list[dict[str, Any]]:
    """The feature build up to the end of ``day`` split into shards of ``shard_customers``
    customers (``models.features.plan_shards``), as plain dicts: one mapped Airflow task each."""
    from models.features import plan_shards

    shards = plan_shards(lake, day_end(day), every_days, shard_customers)
    log.info("features of %d customers in %d shards", sum(s.customers for s in shards), len(shards))
    return [s.as_dict() for s in shards]


def build_feature_shard(
    lake: Path, out: Path, day: date, shard: dict[str, Any], chunk_customers: int = CHUNK_CUSTOMERS
) -> str:
    """One shard's feature rows (from :func:`plan_feature_shards`), built ``chunk_customers``
    customers at a time in forked processes; written as a part beside the day's table."""
    from models.features import FeatureShard, features_of_shard

    plan = FeatureShard.from_dict(shard)
    table = features_of_shard(lake, day_end(day), plan, chunk_customers=chunk_customers)
    path = _out(out, "features", day, f"part-{plan.index:05d}-of-{plan.count:05d}.parquet")
    write_parquet_atomic(pa.Table.from_pandas(table, preserve_index=False), path)
    return str(path)


def join_feature_shards(lake: Path, out: Path, day: date, parts: list[str]) -> str:
    """The day's feature table from its shards' parts, with the CRM's attributes; parts of
    other plans (an earlier run with other shards) are removed, these kept for a rerun."""
    from models.features import join_shards

    table = join_shards((pd.read_parquet(p) for p in parts), lake, day_end(day))
    path = _out(out, "features", day, "features.parquet")
    write_parquet_atomic(pa.Table.from_pandas(table, preserve_index=False), path)
    kept = {Path(p).name for p in parts}
    for stale in path.parent.glob("part-*.parquet"):
        if stale.name not in kept:
            stale.unlink(missing_ok=True)
    return str(path)


def build_feature_table(
    lake: Path,
    out: Path,
    day: date,
    every_days: int = 7,
    chunk_customers: int = CHUNK_CUSTOMERS,
    shard_customers: int = SHARD_CUSTOMERS,
) -> str:
    """Weekly point-in-time feature rows up to the end of ``day`` (the last cut-off): the
    DAG's three feature steps (plan, every shard, join) in this process."""
    shards = plan_feature_shards(lake, day, every_days, shard_customers)
    parts = [build_feature_shard(lake, out, day, s, chunk_customers) for s in shards]
    return join_feature_shards(lake, out, day, parts)


def check_features(features_path: str, gx_dir: Path) -> dict[str, Any]:
    from expectations.runner import validate

    report = validate(pd.read_parquet(features_path), "churn_features", gx_dir)
    return {"evaluated": report.evaluated, "docs": report.docs_url}


# -- 3. churn model -------------------------------------------------------------------------


def train_churn_model(
    features_path: str,
    registry_root: Path,
    day: date,
    bootstrap: str | None = None,
    run_id: str | None = None,
    values_path: str | None = None,
) -> dict[str, Any]:
    """Train a challenger, judge it on the holdout (``promotion_gate``), publish it as a new
    immutable version, and promote and announce it if it passed. With the day's customer
    values (``values_path``), the model card breaks the holdout down by value tier too (the
    tier as of the day, for reporting: it is not a feature)."""
    import hashlib

    from models.churn import GROUP_ONLY, ModelRegistry, train_and_evaluate

    registry = ModelRegistry(registry_root)
    # Training and the holdout use rows with complete labels only (``models.churn.split``):
    # only those are read (the whole table of 3M customers peaked at 6.3 GiB).
    table = pd.read_parquet(features_path, filters=[("label_complete", "==", True)])
    stored = pq.read_table(features_path, columns=["cutoff"])["cutoff"]
    if values_path is not None:
        tiers = pd.read_parquet(values_path, columns=["customer_id", "value_tier"])
        table = table.join(
            tiers.set_index("customer_id")["value_tier"].rename(GROUP_ONLY[0]), on="customer_id"
        )
    result = train_and_evaluate(table, registry, day.isoformat())
    cutoffs = sorted(str(c)[:10] for c in pc.unique(stored).to_pylist())
    lineage = {
        "data": {
            "features_path": features_path,
            "sha256": hashlib.sha256(Path(features_path).read_bytes()).hexdigest(),
            "rows": len(stored),
            "cutoffs": cutoffs,
            "lake_end": day_end(day).isoformat(),
        },
        "airflow_run_id": run_id,
    }
    registry.save(result, extra={"features_path": features_path}, lineage=lineage)
    version = result.version
    published = 0
    if result.promoted:
        registry.promote(version, reason=result.reason)
        published = announce_champion(registry_root, bootstrap, day_end(day))
    log.info("churn model %s: %s; promoted=%s", version, result.reason, result.promoted)
    return {
        "version": version,
        "promoted": result.promoted,
        "reason": result.reason,
        "train_rows": result.train_rows,
        "challenger": result.challenger,
        "baseline": result.baseline,
        "champion": result.champion,
        "published": published,
        "card": str(registry.root / version / "card.md"),
    }


def announce_champion(registry_root: Path, bootstrap: str | None, at: datetime) -> int:
    """Publish a model-updated event for the registry's champion; return 1 if sent.

    The message names the version and its hash, never a path: workers read the file from
    their own registry folder and check both (issue 13). Also how a rollback reaches running
    workers: ``ModelRegistry(root).promote(<older version>)``, then this.
    """
    from forewarn.registry import Registry

    registry = Registry(registry_root)
    pointer = registry.champion()
    if pointer is None:
        return 0
    version = pointer["version"]
    manifest = registry.manifest(version)
    event = ModelUpdated(
        # One id per version and file: a re-announcement after a rollback is a new event.
        event_id=f"churn-{version}-{pointer['sha256'][:12]}"[:64],
        event_time=at,
        model_name="churn",
        version=version,
        sha256=pointer["sha256"],
        metrics={k: v for k, v in manifest.get("metrics", {}).items() if isinstance(v, float)},
    )
    return _publish(bootstrap, [event])


# -- 4. lifetime value ----------------------------------------------------------------------


def value_tiers(clv: pd.Series) -> pd.Series:
    """Top 5% platinum, next 15% gold, next 30% silver, the rest bronze (the 80/20 rule
    says the best customers deserve the most attention)."""
    rank = clv.rank(ascending=False, pct=True, method="first")
    tiers = pd.Series("bronze", index=clv.index)
    for tier, share in reversed(TIER_SHARES):
        tiers[rank <= share] = tier
    return tiers


def fit_lifetime_value(lake: Path, out: Path, day: date, bootstrap: str | None = None) -> str:
    """BG/NBD + Gamma-Gamma on every order placed up to ``day``; CLV per customer."""
    from models.clv import BetaGeoNBD, GammaGamma, customer_value, summarize

    # Placed orders only, chosen in the Parquet scan: finding the copies of every order event
    # first peaked at 4.4 GiB for 1M customers, against 2.3 GiB.
    placed = read_events(
        lake,
        "orders",
        end=day + timedelta(days=1),
        columns=["customer_id", "event_time", "amount"],
        where={"status": "placed"},
    )
    placed = placed.filter(pc.less(placed["event_time"], pa.scalar(day_end(day))))
    tx = placed.rename_columns(["customer_id", "date", "amount"]).to_pandas()
    summary = summarize(tx, day)
    # A young business (or a simulation) may show no dropout yet: BG/NBD's a runs to 0. The
    # nightly keeps that limit with a warning and says so in params.json; `forewarn clv fit`
    # refuses it (issue 16: a non-converged fit is not a result for a user's file).
    bgnbd = BetaGeoNBD(on_boundary="warn").fit(summary.X)
    gamma_gamma = GammaGamma(on_boundary="warn").fit(summary.spend.to_numpy(float))
    values = customer_value(bgnbd, gamma_gamma, summary)
    values["value_tier"] = value_tiers(values["clv_365d"])
    values = values.reset_index()
    path = _out(out, "lifetime_value", day, "customer_values.parquet")
    write_parquet_atomic(pa.Table.from_pandas(values, preserve_index=False), path)
    (path.parent / "params.json").write_text(
        json.dumps(
            {
                "bgnbd": {
                    "r": bgnbd.r_,
                    "alpha": bgnbd.alpha_,
                    "a": bgnbd.a_,
                    "b": bgnbd.b_,
                    "log_likelihood": bgnbd.log_likelihood_,
                    "at_the_boundary": bgnbd.boundary_,
                },
                "gamma_gamma": {
                    "p": gamma_gamma.p_,
                    "q": gamma_gamma.q_,
                    "gamma": gamma_gamma.v_,
                    "at_the_boundary": gamma_gamma.boundary_,
                },
                "amount_policy": summary.counts,
                "customers": len(values),
            },
            indent=2,
        )
    )
    _publish(
        bootstrap,
        [
            CustomerValue(
                event_id=f"cv-{r.customer_id}-{day}",
                event_time=day_end(day),
                customer_id=str(r.customer_id),
                p_alive=float(np.clip(r.p_alive, 0, 1)),
                expected_purchases_90d=float(r.expected_purchases_90d),
                clv_90d=float(max(0.0, r.clv_90d)),
                clv_365d=float(max(0.0, r.clv_365d)),
                value_tier=r.value_tier,
            )
            for r in values.itertuples()
        ],
    )
    return str(path)


# -- 5. at-risk list ------------------------------------------------------------------------


def last_cutoff_rows(features_path: str) -> pd.DataFrame:
    """The feature table's rows of its last cut-off (tonight's customers), read alone: the
    whole table of a million customers' weekly rows peaked at 7.4 GiB in pandas."""

    last = pc.max(pq.read_table(features_path, columns=["cutoff"])["cutoff"])
    return pq.read_table(features_path, filters=pc.field("cutoff") == last).to_pandas()


#: What the at-risk list says while no churn model has passed the promotion gate.
NO_TRUSTED_MODEL = "no trustworthy churn model yet"


def build_at_risk_list(
    features_path: str,
    values_path: str,
    registry_root: Path,
    database_url: str,
    day: date,
    capacity: int = RETENTION_CAPACITY,
    lists_dir: Path | None = None,
) -> str:
    """Rank today's customers, keep the team's capacity, upsert them as retention tasks (one
    per customer, shared with the streams) and export the list as CSV.

    With a champion that passed the promotion gate (``models.churn.promotion_gate``), the
    rank is value at risk: P(churn), calibrated on labels, x 365-day CLV. Without one, the
    list says "no trustworthy churn model yet" and ranks by the transparent points score
    (``heuristic_risk``'s points, highest first, then CLV, then customer id); it shows no
    probability and no money at risk, since the points are not a probability (issue 16:
    they averaged 0.21 where the churn rate was 0.04). Ties always break by customer id, so
    a rerun gives the same list."""
    from forewarn.value import value_at_risk
    from models.churn import ModelRegistry, predict
    from models.customer_state import FEATURES, TIER_SEVERITY, heuristic_risk, top_reasons
    from outreach.migrate import migrate
    from outreach.store import TaskStore

    today = last_cutoff_rows(features_path)
    champion = ModelRegistry(registry_root).trusted_champion()
    x = today[list(FEATURES)].to_numpy(float)
    points = [heuristic_risk(dict(zip(FEATURES, row, strict=True)))[1] for row in x]
    today["points"] = [round(sum(p.values()), 3) for p in points]
    values = pd.read_parquet(values_path).set_index("customer_id")
    today = today.join(values[["clv_365d", "value_tier"]], on="customer_id")
    today["clv_365d"] = today["clv_365d"].fillna(0.0)
    today["value_tier"] = today["value_tier"].fillna("bronze")
    if champion is not None:
        model = f"churn model {champion[0]}"
        today["p_churn"] = predict(champion[1], today)  # its own columns, attributes too
        today["value_at_risk"] = value_at_risk(today["p_churn"], today["clv_365d"])
        order = ["value_at_risk", "customer_id"]
    else:
        model = NO_TRUSTED_MODEL
        today["p_churn"] = np.nan
        today["value_at_risk"] = np.nan
        order = ["points", "clv_365d", "customer_id"]
    ascending = [False] * (len(order) - 1) + [True]
    top = today.sort_values(order, ascending=ascending, kind="stable").head(capacity)
    migrate(database_url)  # the nightly may run before the outreach service ever started
    store = TaskStore(database_url)
    rows = []
    try:
        for r in top.to_dict("records"):
            features = {f: float(r[f]) for f in FEATURES}
            reasons = top_reasons(features, heuristic_risk(features)[1])
            trusted = champion is not None
            if trusted:
                ranking = (
                    f"P(churn) {r['p_churn']:.2f} x CLV {r['clv_365d']:,.0f} EUR = "
                    f"{r['value_at_risk']:,.0f} EUR at risk ({model})"
                )
            else:
                ranking = f"{NO_TRUSTED_MODEL}; ranked by points ({r['points']:.1f})"
            alert = Alert(
                event_id=f"nightly-{day}-{r['customer_id']}",
                event_time=day_end(day),
                alert_id=f"nightly-{day}-{r['customer_id']}",
                dedup_key=retention_key(r["customer_id"]),
                kind="churn_risk",
                customer_id=r["customer_id"],
                severity=TIER_SEVERITY[r["value_tier"]],
                # Without a trusted model there is no probability to state.
                confidence=round(float(min(0.99, r["p_churn"])), 3) if trusted else 0.0,
                score=round(float(r["value_at_risk"] if trusted else r["points"]), 2),
                explanation=f"nightly at-risk list {day}: {ranking}; "
                + "; ".join(reasons or ["model score"]),
                evidence={
                    "reasons": reasons,
                    "value_eur": round(float(r["clv_365d"]), 2),
                    "value_tier": r["value_tier"],
                    "model": model,
                    **(
                        {
                            "p_churn": float(r["p_churn"]),
                            "value_at_risk": round(float(r["value_at_risk"]), 2),
                        }
                        if trusted
                        else {"points": r["points"]}
                    ),
                    "features": features,
                },
                detector="nightly_at_risk.v1",
            )
            task = store.upsert_alert(alert)
            rows.append(
                {
                    "rank": len(rows) + 1,
                    "customer_id": r["customer_id"],
                    "p_churn": round(float(r["p_churn"]), 4) if trusted else "",
                    "points": r["points"],
                    "clv_365d": round(float(r["clv_365d"]), 2),
                    "value_at_risk": round(float(r["value_at_risk"]), 2) if trusted else "",
                    "value_tier": r["value_tier"],
                    "model": model,
                    "reasons": "; ".join(reasons),
                    "task_id": task.task_id if task else "",
                    "suggestion": "" if task is None else store.get(task.task_id).suggestion,
                }
            )
    finally:
        store.close()
    path = (Path(lists_dir) if lists_dir else Path(features_path).parents[2] / "lists") / (
        f"at-risk-{day}.csv"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    pd.DataFrame(rows).to_csv(tmp, index=False)
    tmp.replace(path)
    return str(path)


# -- 6. service KPIs ------------------------------------------------------------------------


def compute_kpis(lake: Path, out: Path, day: date) -> str:
    """The day's KPIs per channel (customer rates need the history before it)."""
    from models.kpis import kpis_of_day

    kpis = kpis_of_day(lake, day)
    path = _out(out, "kpis", day, "kpis.parquet")
    write_parquet_atomic(pa.Table.from_pandas(kpis, preserve_index=False), path)
    return str(path)


# -- the DAG's view of the world ------------------------------------------------------------


class NightlyContext:
    """Where the nightly reads and writes, and which day it works on (``day``, given by the
    DAG from Airflow's data interval: :func:`run_day`)."""

    def __init__(self, day: date, settings: Any = None) -> None:
        from forewarn.settings import Settings

        s = settings or Settings()
        self.day = day
        self.lake = s.lake_dir
        self.out = s.home / "nightly"
        self.gx_dir = s.home / "nightly" / "gx"
        self.registry = s.models_dir / "churn"
        self.database_url = s.database_url
        self.bootstrap = s.publish_bootstrap or None
        self.capacity = s.retention_capacity
        # build_features' peak memory grows with its chunks, and its shards are the tasks
        # Airflow's workers share (docs/operations.md).
        self.chunk_customers = s.feature_chunk_customers
        self.shard_customers = s.nightly_shard_customers


def run_day(
    data_interval_start: datetime | None,
    data_interval_end: datetime | None,
    logical_date: datetime | None = None,
) -> date:
    """The day a run works on, from the run's own dates (never the clock: a rerun of a day
    must work on that day). With a data interval that spans a day, that day; with Airflow 3's
    default cron timetable (interval start == end == the run's logical date, midnight), the
    day that just ended before it.

    >>> from datetime import datetime, UTC
    >>> run_day(datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 2, tzinfo=UTC))
    datetime.date(2026, 3, 1)
    >>> run_day(datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC))
    datetime.date(2026, 2, 28)
    """
    start, end = data_interval_start, data_interval_end
    if start is not None and end is not None and end > start:
        return start.date()
    anchor = start or logical_date
    if anchor is None:
        raise ValueError("a nightly run needs its data interval or logical date from Airflow")
    return (anchor - timedelta(days=1)).date()
