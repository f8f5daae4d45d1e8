"""Forewarn's BG/NBD + Gamma-Gamma against the ``lifetimes`` package on identical data.

Same-process comparison: parameters must agree and we report the wall-time ratio. Data: the
CDNOW summary replicated (and jittered in T so rows are not all duplicates) to ``--customers``
rows. ``lifetimes`` is not a Forewarn dependency; run this in a scratch environment:
``uv pip install lifetimes`` next to the project's streams requirements.

    python bench/clv_vs_lifetimes.py --customers 100000
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from models.clv import BetaGeoNBD, GammaGamma

CDNOW = Path(__file__).parents[2] / "shared" / "data" / "cdnow"


def data(n: int, seed: int = 0) -> pd.DataFrame:
    base = pd.read_csv(CDNOW / "cdnow_customers_summary_with_transactions.csv")
    rng = np.random.default_rng(seed)
    frame = base.sample(n, replace=True, random_state=seed).reset_index(drop=True)
    frame["T"] = frame["T"] + rng.integers(0, 8, n) / 7  # customers who joined days apart
    return frame


def timed(fn):  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def main() -> None:
    from lifetimes import BetaGeoFitter, GammaGammaFitter

    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=100_000)
    n = parser.parse_args().customers
    frame = data(n)
    repeat = frame[frame["x"] > 0]
    ours_bg, t_ours_bg = timed(lambda: BetaGeoNBD().fit(frame[["x", "t_x", "T"]].to_numpy()))
    ours_gg, t_ours_gg = timed(lambda: GammaGamma().fit(repeat[["x", "zbar"]].to_numpy()))
    lt_bg, t_lt_bg = timed(lambda: BetaGeoFitter().fit(frame["x"], frame["t_x"], frame["T"]))
    lt_gg, t_lt_gg = timed(lambda: GammaGammaFitter().fit(repeat["x"], repeat["zbar"]))
    ours = {
        "r": ours_bg.r_,
        "alpha": ours_bg.alpha_,
        "a": ours_bg.a_,
        "b": ours_bg.b_,
        "p": ours_gg.p_,
        "q": ours_gg.q_,
        "v": ours_gg.v_,
    }
    theirs = {**lt_bg.params_.to_dict(), **lt_gg.params_.to_dict()}
    rel = {k: abs(ours[k] - theirs[k]) / abs(theirs[k]) for k in ours}
    print(
        json.dumps(
            {
                "customers": n,
                "seconds": {
                    "forewarn_bgnbd": round(t_ours_bg, 2),
                    "lifetimes_bgnbd": round(t_lt_bg, 2),
                    "forewarn_gamma_gamma": round(t_ours_gg, 2),
                    "lifetimes_gamma_gamma": round(t_lt_gg, 2),
                },
                "speedup": round((t_lt_bg + t_lt_gg) / (t_ours_bg + t_ours_gg), 1),
                "max_relative_parameter_difference": round(max(rel.values()), 5),
                "parameters": {"forewarn": ours, "lifetimes": theirs},
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
