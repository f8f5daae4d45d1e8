"""Forewarn nightly: lake compaction, quality gate, churn retraining, lifetime value, at-risk
list, KPIs.

Runs at midnight UTC on the day that just ended (``airflow dags test forewarn_nightly
2026-03-01`` works on 2026-02-28). The raw events of the day
must pass their Great Expectations suites before anything trains; the feature table has its
own suite before the churn model retrains; a challenger replaces the champion only if it beats
it by a margin, and is then announced to the stream workers. Rerunning a day overwrites its
outputs and upserts the same tasks. The logic lives in ``models/nightly.py``.
"""

from __future__ import annotations

import contextlib
import warnings
from datetime import timedelta

import pendulum
from airflow.sdk import Asset, dag, get_current_context, task

from forewarn.settings import Settings

CHURN_MODEL = Asset("forewarn://models/churn")
CUSTOMER_VALUES = Asset("forewarn://customer-values")
AT_RISK_LIST = Asset("forewarn://lists/at-risk")


@dag(
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["forewarn", "nightly"],
    default_args={
        "retries": Settings().nightly_retries,
        "retry_delay": timedelta(minutes=5),
    },
    doc_md=__doc__,
)
def forewarn_nightly():
    # Each task takes its run's dates from the context Airflow passes it (**context) and
    # hands the day to models/nightly.py, which never reads Airflow or the clock itself.
    # The quality gates fail for data, not for a passing fault: a retry would fail the same way
    # five minutes later (issue 18: 10 min 38 s to fail an empty lake), so they are not retried.
    # The stream writes a lake file per checkpoint; every later task reads the lake, and each
    # feature shard would open all of a day's files to find its customers.
    @task
    def compact_lake(**context) -> dict:  # type: ignore[no-untyped-def]
        from models.nightly import compact_lake

        ctx = _nightly(context)
        return compact_lake(ctx.lake, ctx.day)

    @task(retries=0)
    def check_raw_events(**context) -> dict:  # type: ignore[no-untyped-def]
        from models.nightly import check_raw_events

        ctx = _nightly(context)
        return check_raw_events(ctx.lake, ctx.day, ctx.gx_dir)

    # The feature build grows with the customers: one mapped task per shard of them, so the
    # executor's workers (Celery, Kubernetes) share it; each reads only its own customers.
    @task
    def plan_features(**context) -> list[dict]:  # type: ignore[no-untyped-def]
        from models.nightly import plan_feature_shards

        ctx = _nightly(context)
        return plan_feature_shards(ctx.lake, ctx.day, shard_customers=ctx.shard_customers)

    @task(map_index_template="{{ shard_label }}")
    def build_features(shard: dict, **context) -> str:  # type: ignore[no-untyped-def]
        from models.features import FeatureShard
        from models.nightly import build_feature_shard

        # The mapped task's name in the UI, rendered from the runtime's own context.
        get_current_context()["shard_label"] = FeatureShard.from_dict(shard).label
        ctx = _nightly(context)
        return build_feature_shard(ctx.lake, ctx.out, ctx.day, shard, ctx.chunk_customers)

    @task
    def join_features(parts: list[str], **context) -> str:  # type: ignore[no-untyped-def]
        from models.nightly import join_feature_shards

        ctx = _nightly(context)
        return join_feature_shards(ctx.lake, ctx.out, ctx.day, list(parts))

    @task(retries=0)
    def check_features(features_path: str, **context) -> dict:  # type: ignore[no-untyped-def]
        from models.nightly import check_features

        return check_features(features_path, _nightly(context).gx_dir)

    @task(outlets=[CHURN_MODEL])
    def train_churn(features_path: str, values_path: str, **context) -> dict:  # type: ignore[no-untyped-def]
        from models.nightly import train_churn_model

        ctx = _nightly(context)
        with _quiet_skops():
            return train_churn_model(
                features_path,
                ctx.registry,
                ctx.day,
                ctx.bootstrap,
                run_id=context.get("run_id"),
                values_path=values_path,
            )

    @task(outlets=[CUSTOMER_VALUES])
    def lifetime_value(**context) -> str:  # type: ignore[no-untyped-def]
        from models.nightly import fit_lifetime_value

        ctx = _nightly(context)
        return fit_lifetime_value(ctx.lake, ctx.out, ctx.day, ctx.bootstrap)

    @task(outlets=[AT_RISK_LIST])
    def at_risk_list(features_path: str, values_path: str, **context) -> str:  # type: ignore[no-untyped-def]
        from models.nightly import build_at_risk_list

        ctx = _nightly(context)
        with _quiet_skops():
            return build_at_risk_list(
                features_path, values_path, ctx.registry, ctx.database_url, ctx.day, ctx.capacity
            )

    @task
    def service_kpis(**context) -> str:  # type: ignore[no-untyped-def]
        from models.nightly import compute_kpis

        ctx = _nightly(context)
        return compute_kpis(ctx.lake, ctx.out, ctx.day)

    raw = check_raw_events()
    compact_lake() >> raw
    shards = plan_features()
    features = join_features(build_features.expand(shard=shards))
    checked = check_features(features)
    values = lifetime_value()
    model = train_churn(features, values)  # the values group the model card by tier
    listed = at_risk_list(features, values)
    kpis = service_kpis()
    raw >> [shards, values, kpis]
    checked >> model >> listed


def _nightly(context):  # type: ignore[no-untyped-def]
    """Paths and settings of the run, and its day from the run's data interval."""
    from models.nightly import NightlyContext, run_day

    day = run_day(
        context.get("data_interval_start"),
        context.get("data_interval_end"),
        context.get("logical_date"),
    )
    return NightlyContext(day)


@contextlib.contextmanager
def _quiet_skops():  # type: ignore[no-untyped-def]
    """skops finds a saved object's module by reading attributes of every loaded module, and
    Airflow's lazy modules warn on each read: ~1,100 warning lines per run (issue 18)."""
    from airflow.utils.deprecation_tools import DeprecatedImportWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecatedImportWarning)
        yield


forewarn_nightly()
