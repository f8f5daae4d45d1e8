"""The nightly at scale, and the churn model against a default scikit-learn booster.

Runs in the Airflow environment (Great Expectations): ``python -m bench.nightly [--quick]``
prints one JSON line of results for ``python -m bench``. Each nightly task runs in its own
forked process, so its wall time and peak memory (VmHWM) are its own. The lake holds 60 days
of orders and tickets of N simulated customers (telemetry, which the nightly does not read, is
left out so a million customers fit on this machine).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from bench.common import Result, peak_rss_mb, timed

START = datetime(2026, 1, 5, tzinfo=UTC)
DAYS = 60
DAY = date(2026, 3, 5)  # the nightly's day: the last full day of the scenario


def make_lake(root: Path, customers: int, seed: int = 1) -> int:
    from forewarn.publish import write_lake
    from simulator import build_world
    from simulator.render import customer_events

    world = build_world(n_customers=customers, days=DAYS, start=START, seed=seed)
    # Streamed to the lake in chunks, unsorted (readers sort): a million customers' events
    # would not fit in memory as one sorted list.
    events = (e for c in world.customers for e in customer_events(c, world))
    return write_lake(events, root, progress=False)


def _child(fn: Callable[[], Any], queue: Any) -> None:
    started = time.perf_counter()
    out = fn()
    # A task that forks workers of its own (the feature build, one per CPU) also uses their
    # memory: count each worker at the largest one's peak, alongside the task's.
    child_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    workers_mb = (os.cpu_count() or 1) * child_mb
    queue.put((out, time.perf_counter() - started, peak_rss_mb() + workers_mb))


def in_process(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """Run ``fn`` in a forked process: (its result, seconds, peak MiB of it and any worker
    processes it forked, those counted at the largest one's peak)."""
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(fn, queue))
    proc.start()
    out = queue.get()
    proc.join()
    if proc.exitcode != 0:
        raise RuntimeError(f"task failed with exit code {proc.exitcode}")
    return out


def nightly(customers: int) -> dict[str, Any]:
    """Every task of the DAG in order on a fresh lake: seconds and MiB per task."""
    from models import nightly as n

    folder = Path(tempfile.mkdtemp(prefix="forewarn-nightly-bench-"))
    try:
        lake, out, gx, registry = folder / "lake", folder / "out", folder / "gx", folder / "reg"
        events, setup_s = timed(lambda: make_lake(lake, customers))
        db = f"sqlite:///{folder / 'outreach.db'}"
        tasks: dict[str, dict[str, float]] = {}

        def step(name: str, fn: Callable[[], Any]) -> Any:
            result, seconds, mb = in_process(fn)
            tasks[name] = {"seconds": round(seconds, 2), "peak_mb": round(mb)}
            print(f"  {customers} customers: {name} {seconds:.1f} s {mb:.0f} MiB", file=sys.stderr)
            return result

        step("check_raw_events", lambda: n.check_raw_events(lake, DAY, gx))
        features = step("build_features", lambda: n.build_feature_table(lake, out, DAY))
        step("check_features", lambda: n.check_features(features, gx))
        trained = step("train_churn", lambda: n.train_churn_model(features, registry, DAY))
        values = step("lifetime_value", lambda: n.fit_lifetime_value(lake, out, DAY))
        step(
            "at_risk_list",
            lambda: n.build_at_risk_list(features, values, registry, db, DAY, capacity=25),
        )
        step("kpis", lambda: n.compute_kpis(lake, out, DAY))
        return {
            "customers": customers,
            "events": events,
            "setup_s": round(setup_s, 1),
            "seconds": round(sum(t["seconds"] for t in tasks.values()), 1),
            "peak_mb": max(t["peak_mb"] for t in tasks.values()),
            "tasks": tasks,
            "churn": {
                "train_rows": trained["train_rows"],
                "holdout_auc": round(trained["challenger"]["roc_auc"], 4),
            },
            "features_path": features,
            "folder": str(folder),
        }
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def churn_vs_default(features_path: str) -> Result:
    """Our learner (models.learner: the stack) against a default HistGradientBoostingClassifier,
    same split."""
    import pandas as pd
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score

    from models.churn import LABEL, make_estimator, split
    from models.customer_state import FEATURES

    train, holdout = split(pd.read_parquet(features_path))
    x, y = train[list(FEATURES)].to_numpy(float), train[LABEL].to_numpy(int)
    xh, yh = holdout[list(FEATURES)].to_numpy(float), holdout[LABEL].to_numpy(int)
    ours, t_ours = timed(lambda: make_estimator(0).fit(x, y))
    default, t_default = timed(lambda: HistGradientBoostingClassifier(random_state=0).fit(x, y))
    auc_ours = roc_auc_score(yh, ours.predict_proba(xh)[:, 1])
    auc_default = roc_auc_score(yh, default.predict_proba(xh)[:, 1])
    return Result(
        name="churn_model",
        figures={"train_s": round(t_ours, 2), "holdout_auc": round(auc_ours, 4)},
        units={"train_s": "s", "holdout_auc": "ROC AUC on the later cut-offs"},
        baseline_name="HistGradientBoostingClassifier()",
        baseline={"train_s": round(t_default, 2), "holdout_auc": round(auc_default, 4)},
        ratio=round(auc_ours - auc_default, 4),
        ratio_of="AUC difference (ours - default)",
        goal="holdout AUC at least the default booster's (calibration is what we add)",
        goal_met=bool(auc_ours >= auc_default - 0.005),
        notes={"train_rows": len(train), "holdout_rows": len(holdout)},
    )


def run(quick: bool = False, sizes: tuple[int, int] | None = None) -> list[Result]:
    small, large = sizes or ((2_000, 10_000) if quick else (100_000, 1_000_000))
    base = nightly(small)
    big = nightly(large)
    try:
        churn = churn_vs_default(base["features_path"])
    finally:
        for run_ in (base, big):
            shutil.rmtree(run_["folder"], ignore_errors=True)
    minutes = big["seconds"] / 60
    scaling = big["seconds"] / base["seconds"]
    nightly_result = Result(
        name="nightly_at_scale",
        figures={"customers": large, "minutes": round(minutes, 2), "peak_mb": big["peak_mb"]},
        units={
            "customers": "customers",
            "minutes": "min, all tasks",
            "peak_mb": "MiB (largest task)",
        },
        baseline_name=f"the same nightly on {small:,} customers",
        baseline={
            "customers": small,
            "minutes": round(base["seconds"] / 60, 2),
            "peak_mb": base["peak_mb"],
        },
        ratio=round(scaling, 2),
        ratio_of=f"time ratio for {large // small}x the customers",
        goal="<= 10 minutes for 1,000,000 customers on this 2-core machine",
        goal_met=bool(large >= 1_000_000 and minutes <= 10),
        notes={
            "tasks": {str(small): base["tasks"], str(large): big["tasks"]},
            "events": {str(small): base["events"], str(large): big["events"]},
            "lake_setup_s": {str(small): base["setup_s"], str(large): big["setup_s"]},
            "churn": {str(small): base["churn"], str(large): big["churn"]},
        },
    )
    return [nightly_result, churn]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.nightly")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--customers", default="", help="two sizes, e.g. 10000,100000")
    args = parser.parse_args()
    sizes = tuple(int(n) for n in args.customers.split(",")) if args.customers else None
    results = run(quick=args.quick, sizes=sizes)  # type: ignore[arg-type]
    print(json.dumps([r.as_dict() for r in results], default=float))


if __name__ == "__main__":
    main()
