"""The nightly at scale, and the churn model against a default scikit-learn booster.

Runs in the Airflow environment (Great Expectations): ``python -m bench.nightly [--quick]``
prints one JSON line of results for ``python -m bench``. Each nightly task runs in its own
forked process, so its wall time and peak memory (VmHWM) are its own. The lake holds 60 days
of orders and tickets of N simulated customers (telemetry, which the nightly does not read, is
left out so a million customers fit on this machine).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import psutil

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
    queue.put((out, time.perf_counter() - started, peak_rss_mb()))


class TreeMemory(threading.Thread):
    """The largest proportional set size (PSS) of a process and its descendants together,
    sampled every ``every_s``: what the task's container or worker holds. Pages a forked
    worker shares with its parent count once, split between them. (The first measure of
    this benchmark added each child's ``ru_maxrss``, x the CPU count: a ``git`` subprocess
    that a 2.3 GiB task started reported 2.3 GiB itself, so train_churn read 7.3 GiB.)"""

    def __init__(self, pid: int, every_s: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.process, self.every_s = psutil.Process(pid), every_s
        self.peak_mb = 0.0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            total = 0
            try:
                members = [self.process, *self.process.children(recursive=True)]
            except psutil.Error:
                return  # the task has ended
            for member in members:
                with contextlib.suppress(psutil.Error):  # a worker that just ended
                    total += member.memory_full_info().pss
            self.peak_mb = max(self.peak_mb, total / 2**20)
            self.done.wait(self.every_s)

    def stop(self) -> float:
        self.done.set()
        self.join()
        return self.peak_mb


def in_process(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """Run ``fn`` in a forked process: (its result, seconds, peak MiB): the larger of its own
    peak resident memory and the sampled PSS of it and the processes it starts."""
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(fn, queue))
    proc.start()
    tree = TreeMemory(proc.pid)
    tree.start()
    out, seconds, own_mb = queue.get()
    proc.join()
    tree_mb = tree.stop()
    if proc.exitcode != 0:
        raise RuntimeError(f"task failed with exit code {proc.exitcode}")
    return out, seconds, max(own_mb, tree_mb)


def kpis_whole_history(lake: Path) -> int:
    """The KPIs as the nightly computed them before ``kpis_of_day``: every ticket and order
    in pandas, every day's KPIs, then the one day kept (the baseline of ``kpis``)."""
    from datetime import timedelta

    from forewarn.lake import read_events
    from models.kpis import service_kpis

    end = DAY + timedelta(days=1)
    tickets = read_events(lake, "tickets", end=end).to_pandas()
    orders = read_events(lake, "orders", end=end, columns=["customer_id", "event_time"])
    kpis = service_kpis(tickets, orders.to_pandas())
    return len(kpis[kpis["date"] == DAY])


def cached_lake(lake: Path, customers: int, cache: Path | None) -> int:
    """Write the lake of ``customers`` at ``lake``; with a ``cache`` folder, write it there once
    (``customers=N``: the simulator is seeded, so it is the same lake) and copy it: the first
    night compacts a copy as written, and a 3M lake takes half an hour to simulate."""
    if cache is None:
        return make_lake(lake, customers)
    kept = cache / f"customers={customers}"
    count = kept / "events.txt"
    if not count.exists():
        shutil.rmtree(kept, ignore_errors=True)
        events = make_lake(kept / "lake", customers)
        count.write_text(str(events))
    shutil.copytree(kept / "lake", lake)
    return int(count.read_text())


def nightly(
    customers: int, shard_customers: int | None = None, lakes: Path | None = None
) -> dict[str, Any]:
    """Every task of the DAG in order on a fresh lake (each shard of the feature build its own
    task, as Airflow maps it): seconds and MiB per task."""
    from models import nightly as n

    shard_customers = shard_customers or n.SHARD_CUSTOMERS

    folder = Path(tempfile.mkdtemp(prefix="forewarn-nightly-bench-"))
    try:
        lake, out, gx, registry = folder / "lake", folder / "out", folder / "gx", folder / "reg"
        events, setup_s = timed(lambda: cached_lake(lake, customers, lakes))
        db = f"sqlite:///{folder / 'outreach.db'}"
        tasks: dict[str, dict[str, float]] = {}

        def step(name: str, fn: Callable[[], Any]) -> Any:
            result, seconds, mb = in_process(fn)
            tasks[name] = {"seconds": round(seconds, 2), "peak_mb": round(mb)}
            print(f"  {customers} customers: {name} {seconds:.1f} s {mb:.0f} MiB", file=sys.stderr)
            return result

        step("compact_lake", lambda: n.compact_lake(lake, DAY))
        step("check_raw_events", lambda: n.check_raw_events(lake, DAY, gx))
        plan = step("plan_features", lambda: n.plan_feature_shards(lake, DAY, 7, shard_customers))
        parts = [
            step(
                f"build_features[{s['index']}]",
                lambda s=s: n.build_feature_shard(lake, out, DAY, s),
            )
            for s in plan
        ]
        features = step("join_features", lambda: n.join_feature_shards(lake, out, DAY, parts))
        step("check_features", lambda: n.check_features(features, gx))
        trained = step("train_churn", lambda: n.train_churn_model(features, registry, DAY))
        values = step("lifetime_value", lambda: n.fit_lifetime_value(lake, out, DAY))
        step(
            "at_risk_list",
            lambda: n.build_at_risk_list(features, values, registry, db, DAY, capacity=25),
        )
        step("kpis", lambda: n.compute_kpis(lake, out, DAY))
        _, old_s, old_mb = in_process(lambda: kpis_whole_history(lake))
        print(
            f"  {customers} customers: kpis before {old_s:.1f} s {old_mb:.0f} MiB", file=sys.stderr
        )
        shard_tasks = [t for name, t in tasks.items() if name.startswith("build_features[")]
        return {
            "shards": len(plan),
            "shard_customers": shard_customers,
            "feature_tasks_s": round(sum(t["seconds"] for t in shard_tasks), 1),
            "feature_shard_peak_mb": max(t["peak_mb"] for t in shard_tasks),
            "kpis_before": {"seconds": round(old_s, 2), "peak_mb": round(old_mb)},
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


def run(
    quick: bool = False,
    sizes: tuple[int, ...] | None = None,
    shard_customers: int | None = None,
    lakes: Path | None = None,
) -> list[Result]:
    """The nightly at the first two ``sizes`` (the result and its baseline), and at any
    further sizes for the curve (``notes["curve"]``)."""
    small, large, *more = sizes or ((2_000, 10_000) if quick else (100_000, 1_000_000))
    if quick:
        shard_customers = shard_customers or 4_000  # the quick run's large size in shards too
    base = nightly(small, shard_customers, lakes)
    big = nightly(large, shard_customers, lakes)
    runs = [base, big]
    try:
        for customers in more:
            runs.append(nightly(customers, shard_customers, lakes))
            shutil.rmtree(runs[-1]["folder"], ignore_errors=True)
        churn = churn_vs_default(base["features_path"])
    finally:
        for run_ in runs:
            shutil.rmtree(run_["folder"], ignore_errors=True)
    curve = {
        str(r["customers"]): {
            "events": r["events"],
            "seconds": r["seconds"],
            "peak_mb": r["peak_mb"],
            "feature_tasks_s": r["feature_tasks_s"],
            "tasks": r["tasks"],
        }
        for r in runs
    }
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
        goal="<= 5 minutes for 1,000,000 customers on this 2-core machine, <= 4 GiB a task",
        goal_met=bool(large >= 1_000_000 and minutes <= 5 and big["peak_mb"] <= 4096),
        notes={
            "feature_shards": {
                str(n["customers"]): {
                    k: n[k]
                    for k in (
                        "shards",
                        "shard_customers",
                        "feature_tasks_s",
                        "feature_shard_peak_mb",
                    )
                }
                for n in (base, big)
            },
            "tasks": {str(small): base["tasks"], str(large): big["tasks"]},
            "events": {str(small): base["events"], str(large): big["events"]},
            "lake_setup_s": {str(small): base["setup_s"], str(large): big["setup_s"]},
            "churn": {str(small): base["churn"], str(large): big["churn"]},
            "curve": curve,
        },
    )
    kpis_result = Result(
        name="kpis_one_day",
        figures={
            "seconds": big["tasks"]["kpis"]["seconds"],
            "peak_mb": big["tasks"]["kpis"]["peak_mb"],
        },
        units={"seconds": "s", "peak_mb": "MiB"},
        baseline_name="every ticket and order in pandas, every day's KPIs (the nightly before)",
        baseline=big["kpis_before"],
        ratio=round(big["kpis_before"]["seconds"] / max(big["tasks"]["kpis"]["seconds"], 1e-9), 2),
        ratio_of=f"speed-up on {large:,} customers",
        goal="service_kpis without reading every ticket into pandas",
        goal_met=bool(big["tasks"]["kpis"]["seconds"] < big["kpis_before"]["seconds"]),
        notes={str(small): {"after": base["tasks"]["kpis"], "before": base["kpis_before"]}},
    )
    return [nightly_result, kpis_result, churn]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.nightly")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--customers",
        default="",
        help="two sizes or more, e.g. 100000,1000000,3000000 (the first two: result and baseline)",
    )
    parser.add_argument("--shard-customers", type=int, default=None, help="customers a shard")
    parser.add_argument(
        "--lakes", type=Path, default=None, help="keep the simulated lakes here and reuse them"
    )
    args = parser.parse_args()
    sizes = tuple(int(n) for n in args.customers.split(",")) if args.customers else None
    if sizes is not None and len(sizes) < 2:
        parser.error("--customers needs at least two sizes")
    results = run(
        quick=args.quick, sizes=sizes, shard_customers=args.shard_customers, lakes=args.lakes
    )
    print(json.dumps([r.as_dict() for r in results], default=float))


if __name__ == "__main__":
    main()
