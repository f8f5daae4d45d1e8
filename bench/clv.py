"""Lifetime value: Forewarn's BG/NBD + Gamma-Gamma against the ``lifetimes`` package.

Identical data (the CDNOW summary resampled to N customers, T jittered by whole days so the
rows are not all copies), fit and 90-day prediction on both; parameters must agree within
0.1%. ``lifetimes`` is installed only in the benchmark environment (requirements/bench.in).

    python -m bench --only clv
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench.common import Result, reference_data, timed
from models.clv import WEEK_DAYS, BetaGeoNBD, GammaGamma

HORIZON_WEEKS = 90 / WEEK_DAYS


def data(n: int, seed: int = 0) -> pd.DataFrame:
    base = pd.read_csv(reference_data("cdnow", "cdnow_customers_summary_with_transactions.csv"))
    rng = np.random.default_rng(seed)
    frame = base.sample(n, replace=True, random_state=seed).reset_index(drop=True)
    frame["T"] = frame["T"] + rng.integers(0, 8, n) / 7  # customers who joined days apart
    return frame


def ours(frame: pd.DataFrame) -> tuple[dict[str, float], np.ndarray]:
    X = frame[["x", "t_x", "T"]].to_numpy(float)
    repeat = frame[frame["x"] > 0]
    bg = BetaGeoNBD().fit(X)
    gg = GammaGamma().fit(repeat[["x", "zbar"]].to_numpy(float))
    clv = bg.predict(X, HORIZON_WEEKS) * gg.predict(frame[["x", "zbar"]].to_numpy(float))
    params = {"r": bg.r_, "alpha": bg.alpha_, "a": bg.a_, "b": bg.b_}
    return params | {"p": gg.p_, "q": gg.q_, "v": gg.v_}, clv


def theirs(frame: pd.DataFrame) -> tuple[dict[str, float], np.ndarray]:
    from lifetimes import BetaGeoFitter, GammaGammaFitter

    repeat = frame[frame["x"] > 0]
    bg = BetaGeoFitter().fit(frame["x"], frame["t_x"], frame["T"])
    gg = GammaGammaFitter().fit(repeat["x"], repeat["zbar"])
    purchases = bg.conditional_expected_number_of_purchases_up_to_time(
        HORIZON_WEEKS, frame["x"], frame["t_x"], frame["T"]
    )
    spend = gg.conditional_expected_average_profit(frame["x"], frame["zbar"])
    return {**bg.params_.to_dict(), **gg.params_.to_dict()}, np.asarray(purchases * spend)


def run(quick: bool = False, runs: int = 3) -> Result:
    n = 20_000 if quick else 1_000_000
    runs = 1 if quick else runs
    frame = data(n)
    our_times, their_times = [], []
    for _ in range(runs):
        (our_params, our_clv), t_ours = timed(lambda: ours(frame))
        (their_params, their_clv), t_theirs = timed(lambda: theirs(frame))
        our_times.append(t_ours)
        their_times.append(t_theirs)
    rel = {k: abs(our_params[k] - their_params[k]) / abs(their_params[k]) for k in our_params}
    clv_rel = float(np.nanmax(np.abs(our_clv - their_clv) / np.maximum(np.abs(their_clv), 1e-9)))
    t_ours, t_theirs = float(np.median(our_times)), float(np.median(their_times))
    speedup = t_theirs / t_ours
    agree = max(rel.values()) < 1e-3
    return Result(
        name="lifetime_value",
        figures={"customers": n, "seconds": round(t_ours, 3)},
        units={"customers": "rows", "seconds": "s (fit both models + 90-day CLV)"},
        baseline_name="lifetimes 0.11.3",
        baseline={"customers": n, "seconds": round(t_theirs, 3)},
        ratio=round(speedup, 1),
        ratio_of="speed-up (baseline seconds / ours)",
        goal=">= 10x faster, parameters within 0.1%",
        goal_met=bool(speedup >= 10 and agree),
        runs=runs,
        notes={
            "max_relative_parameter_difference": float(f"{max(rel.values()):.2e}"),
            "max_relative_clv_difference": float(f"{clv_rel:.2e}"),
            "parameters": {"forewarn": our_params, "lifetimes": their_params},
        },
    )
