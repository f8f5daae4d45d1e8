"""Customer lifetime value: BG/NBD for repeat purchases and Gamma-Gamma for spend.

Estimators in the scikit-learn style (parameters in ``__init__``, learned values end in ``_``,
``fit`` returns ``self``), vectorised with NumPy/SciPy so a million customers fit in seconds.

Inputs are the usual RFM summary, in weeks (or any unit, used consistently):

* ``x``: repeat purchases in the calibration period (the first purchase is not counted),
* ``t_x``: time from the first to the last purchase,
* ``T``: time from the first purchase to the end of the calibration period,
* ``m``: mean spend of the repeat purchases (Gamma-Gamma only, customers with ``x > 0``).

Amounts (:func:`summarize`): refunds are netted per customer-day (a purchase and its refund
on the same day leave the net); a day whose net is zero is a purchase for frequency but not
for spend (a free or fully discounted order is still a visit); a day whose net is negative
(a refund of an earlier day's order) is not a purchase and is left out, and counted. So
``m`` is the mean of the positive repeat days and ``x_spend`` their number; Gamma-Gamma
fits and predicts on those.

A fit that does not converge, or whose parameters run off to the edge of the space (r 28,739
on a 3-day calibration window), raises :class:`ConvergenceError` naming the cause; so does
data that cannot identify the model (no repeat buyers, a single calibration day).

References
----------
Fader, Hardie & Lee (2005), "Counting your customers the easy way: an alternative to the
Pareto/NBD model", Marketing Science 24(2). Fader & Hardie (2013), "The Gamma-Gamma model of
monetary value". On the CDNOW sample both reproduce the published estimates (tests/models).

Examples
--------
>>> import numpy as np
>>> X = np.array([[2, 30.43, 38.86], [1, 1.71, 38.86], [0, 0.0, 38.86], [0, 0.0, 38.86],
...               [6, 37.0, 38.86], [1, 36.0, 38.86], [0, 0.0, 20.0], [3, 5.0, 38.86]])
>>> model = BetaGeoNBD().fit(np.repeat(X, 50, axis=0))
>>> bool(model.p_alive(X)[0] > model.p_alive(X)[1])
True
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import digamma, gammaln, hyp2f1
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_array, check_is_fitted

WEEK_DAYS = 7.0
#: Fitted parameters beyond these bounds mean the likelihood had no interior maximum: the
#: optimiser walked off towards a limit (issue 16: r 28,739 from a 3-day window). On CDNOW
#: every parameter is between 0.2 and 16.
PARAM_MIN, PARAM_MAX = 1e-4, 1e4


class ConvergenceError(RuntimeError):
    """A model fit that is not a result; the message names the cause and the fix."""


def _fit(
    neg_ll: Callable[[np.ndarray], float],
    n_params: int,
    max_iter: int,
    jac: Callable[[np.ndarray], np.ndarray] | None = None,
    names: tuple[str, ...] = (),
    model: str = "the model",
    on_boundary: str = "raise",
) -> tuple[np.ndarray, list[str]]:
    """Minimise a negative log-likelihood over log-parameters (keeps them positive); raise
    :class:`ConvergenceError` when the optimiser fails, or when the parameters run off to the
    edge of the space unless ``on_boundary`` is ``"warn"``; return the parameters and the
    ones that ran off."""
    result = minimize(
        neg_ll,
        np.zeros(n_params),
        method="L-BFGS-B",
        jac=jac,
        options={"maxiter": max_iter, "ftol": 1e-14, "gtol": 1e-10},
    )
    if not np.isfinite(result.fun) or (
        not result.success and "ABNORMAL" not in str(result.message)
    ):
        raise ConvergenceError(
            f"{model}: maximum likelihood did not converge ({result.message}); check the "
            "input summary, or fit with a penalizer"
        )
    if jac is None:
        # Without a gradient, polish with Nelder-Mead: the surface is flat along r/alpha.
        result = minimize(
            neg_ll,
            result.x,
            method="Nelder-Mead",
            options={"maxiter": max_iter * 10, "xatol": 1e-10, "fatol": 1e-10},
        )
    params = np.exp(result.x)
    off = [
        f"{name} = {value:.4g}"
        for name, value in zip(names or [f"p{i}" for i in range(n_params)], params, strict=True)
        if not PARAM_MIN < value < PARAM_MAX
    ]
    if off and on_boundary == "warn":
        import warnings

        warnings.warn(
            f"{model}: parameters at the edge of the space ({', '.join(off)}): a limit of the "
            "model (e.g. no dropout seen), kept because on_boundary='warn'",
            stacklevel=3,
        )
    elif off:
        raise ConvergenceError(
            f"{model}: the fit did not converge to a usable maximum ({', '.join(off)}, outside "
            f"{PARAM_MIN:g}..{PARAM_MAX:g}): the likelihood keeps improving towards a limit, "
            "which usually means too little data (a calibration window of a few days, few "
            "repeat buyers); use a longer calibration period"
        )
    return params, off


def _rfm(X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    X = check_array(X, dtype=float)
    if X.shape[1] != 3:
        raise ValueError(f"X must have 3 columns (x, t_x, T), got {X.shape[1]}")
    x, t_x, T = X[:, 0], X[:, 1], X[:, 2]
    if (x < 0).any() or (t_x < 0).any() or (t_x > T + 1e-9).any():
        raise ValueError("X needs x >= 0 and 0 <= t_x <= T in every row")
    return x, t_x, T


def _unique_rows(
    *columns: np.ndarray,
) -> tuple[tuple[np.ndarray, ...], np.ndarray, np.ndarray]:
    """Distinct rows of ``columns``, their counts, and the index that maps them back.

    A million customers summarised in days have a few ten thousand distinct (x, t_x, T):
    likelihoods and predictions are computed once per distinct row. (A lexsort of the columns,
    not ``np.unique(axis=0)``, whose sort of row records was 0.25 s per 200,000 rows.)
    """
    order = np.lexsort(columns[::-1])
    ordered = np.column_stack([c[order] for c in columns])
    starts = np.ones(len(order), dtype=bool)
    starts[1:] = (ordered[1:] != ordered[:-1]).any(axis=1)
    group = np.cumsum(starts) - 1
    inverse = np.empty(len(order), dtype=np.intp)
    inverse[order] = group
    return tuple(ordered[starts].T), np.bincount(group), inverse


class BetaGeoNBD(BaseEstimator):
    """BG/NBD: purchases while alive (Poisson-Gamma) and dropout after each purchase
    (Beta-geometric).

    Parameters
    ----------
    penalizer : float
        L2 penalty on the parameters (0 reproduces the published maximum likelihood).
    max_iter : int
        Optimiser iterations.
    on_boundary : {"raise", "warn"}
        A fit whose parameters run off to the edge of the space (outside ``PARAM_MIN`` ..
        ``PARAM_MAX``) raises :class:`ConvergenceError` (``"raise"``, for users' files), or
        is kept with a warning and listed in ``boundary_`` (``"warn"``: the nightly, where
        a = 0 means the data show no dropout yet and the model's no-dropout limit is the
        honest answer).

    Attributes
    ----------
    r_, alpha_, a_, b_ : float
        Fitted parameters (``alpha_`` in the time unit of ``X``).
    log_likelihood_ : float
        Total log-likelihood at the optimum.
    boundary_ : list of str
        Parameters that ran off to the edge of the space (empty for an interior optimum).
    """

    def __init__(
        self, *, penalizer: float = 0.0, max_iter: int = 2000, on_boundary: str = "raise"
    ) -> None:
        self.penalizer = penalizer
        self.max_iter = max_iter
        self.on_boundary = on_boundary

    @staticmethod
    def _branches(
        params: np.ndarray, x: np.ndarray, t_x: np.ndarray, T: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """The two terms of the likelihood's sum (alive at T; dropped out after t_x), as logs."""
        r, alpha, a, b = params
        a3 = -(r + x) * np.log(alpha + T)
        with np.errstate(divide="ignore", invalid="ignore"):
            a4 = np.where(
                x > 0,
                np.log(a) - np.log(np.maximum(b + x - 1, 1e-12)) - (r + x) * np.log(alpha + t_x),
                -np.inf,
            )
        return a3, a4

    @classmethod
    def _log_likelihood(
        cls, params: np.ndarray, x: np.ndarray, t_x: np.ndarray, T: np.ndarray
    ) -> np.ndarray:
        r, alpha, a, b = params
        a1 = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
        a2 = gammaln(a + b) + gammaln(b + x) - gammaln(b) - gammaln(a + b + x)
        return a1 + a2 + np.logaddexp(*cls._branches(params, x, t_x, T))

    def fit(self, X: np.ndarray, y: None = None) -> BetaGeoNBD:
        """Fit on ``X`` of shape (n_customers, 3): columns x, t_x, T."""
        x, t_x, T = _rfm(X)
        if not (x > 0).any():
            raise ConvergenceError(
                "BG/NBD: no customer made a repeat purchase in the calibration period, so "
                "purchase rates and dropout cannot be told apart; use a longer period"
            )
        if not (T > 0).any():
            raise ConvergenceError(
                "BG/NBD: every customer's observation time T is 0 (a single calibration day); "
                "use a longer calibration period"
            )
        # Customers with the same (x, t_x, T) share a likelihood term: fit on the unique rows.
        (ux, ut_x, uT), counts, _ = _unique_rows(x, t_x, T)
        weights = counts / counts.sum()

        def neg_ll(log_params: np.ndarray) -> float:
            params = np.exp(log_params)
            ll = self._log_likelihood(params, ux, ut_x, uT)
            return -(weights @ ll) + self.penalizer * float(params @ params)

        def grad(log_params: np.ndarray) -> np.ndarray:
            # Analytic gradient: L-BFGS-B converges without a derivative-free polish, which
            # was most of the fitting time (bench/clv.py measures it against lifetimes).
            r, alpha, a, b = params = np.exp(log_params)
            a3, a4 = self._branches(params, ux, ut_x, uT)
            total = np.logaddexp(a3, a4)
            w3, w4 = np.exp(a3 - total), np.exp(a4 - total)  # w4 = 0 where x = 0
            log_T, log_tx = np.log(alpha + uT), np.log(alpha + ut_x)
            bx1 = np.maximum(b + ux - 1, 1e-12)
            psi_abx = digamma(a + b + ux)
            d_r = digamma(r + ux) - digamma(r) + np.log(alpha) - w3 * log_T - w4 * log_tx
            d_alpha = r / alpha - (r + ux) * (w3 / (alpha + uT) + w4 / (alpha + ut_x))
            d_a = digamma(a + b) - psi_abx + w4 / a
            d_b = digamma(a + b) + digamma(b + ux) - digamma(b) - psi_abx - w4 / bx1
            g = np.array([weights @ d for d in (d_r, d_alpha, d_a, d_b)])
            return -g * params + 2 * self.penalizer * params * params

        params, self.boundary_ = _fit(
            neg_ll,
            4,
            self.max_iter,
            jac=grad,
            names=("r", "alpha", "a", "b"),
            model="BG/NBD",
            on_boundary=self.on_boundary,
        )
        self.r_, self.alpha_, self.a_, self.b_ = params
        self.log_likelihood_ = float(counts @ self._log_likelihood(self.params_, ux, ut_x, uT))
        return self

    @property
    def params_(self) -> np.ndarray:
        check_is_fitted(self, "r_")
        return np.array([self.r_, self.alpha_, self.a_, self.b_])

    def p_alive(self, X: np.ndarray) -> np.ndarray:
        """P(customer still active at T), shape (n_customers,)."""
        r, alpha, a, b = self.params_
        (x, t_x, T), _, inverse = _unique_rows(*_rfm(X))
        with np.errstate(divide="ignore", invalid="ignore"):
            odds = np.where(
                x > 0,
                a / np.maximum(b + x - 1, 1e-12) * ((alpha + T) / (alpha + t_x)) ** (r + x),
                0.0,
            )
        return (1.0 / (1.0 + odds))[inverse]

    def predict(self, X: np.ndarray, t: float) -> np.ndarray:
        """Expected repeat purchases in the next ``t`` time units, shape (n_customers,)."""
        r, alpha, a, b = self.params_
        # hyp2f1 is the costly part: evaluate it once per distinct (x, t_x, T).
        (x, t_x, T), _, inverse = _unique_rows(*_rfm(X))
        hyp = hyp2f1(r + x, b + x, a + b + x - 1, t / (alpha + T + t))
        head = (a + b + x - 1) / (a - 1) * (1 - ((alpha + T) / (alpha + T + t)) ** (r + x) * hyp)
        with np.errstate(divide="ignore", invalid="ignore"):
            odds = np.where(
                x > 0,
                a / np.maximum(b + x - 1, 1e-12) * ((alpha + T) / (alpha + t_x)) ** (r + x),
                0.0,
            )
        return (head / (1 + odds))[inverse]

    def expected_purchases(self, t: np.ndarray | float) -> np.ndarray:
        """Unconditional E[X(t)] for a new customer, over times ``t``."""
        r, alpha, a, b = self.params_
        t = np.asarray(t, dtype=float)
        return (
            (a + b - 1)
            / (a - 1)
            * (1 - (alpha / (alpha + t)) ** r * hyp2f1(r, b, a + b - 1, t / (alpha + t)))
        )


class GammaGamma(BaseEstimator):
    """Gamma-Gamma: each customer's mean spend, shrunk toward the population's.

    Attributes
    ----------
    p_, q_, v_ : float
        Fitted parameters (``v_`` is the scale, called gamma in the paper).
    log_likelihood_ : float
    """

    def __init__(
        self, *, penalizer: float = 0.0, max_iter: int = 2000, on_boundary: str = "raise"
    ) -> None:
        self.penalizer = penalizer
        self.max_iter = max_iter
        self.on_boundary = on_boundary

    @staticmethod
    def _xm(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        X = check_array(X, dtype=float)
        if X.shape[1] != 2:
            raise ValueError(f"X must have 2 columns (x, m), got {X.shape[1]}")
        x, m = X[:, 0], X[:, 1]
        if (x <= 0).any() or (m <= 0).any():
            raise ValueError("Gamma-Gamma needs customers with x > 0 and mean spend m > 0")
        return x, m

    def fit(self, X: np.ndarray, y: None = None) -> GammaGamma:
        """Fit on ``X`` of shape (n_repeat_customers, 2): columns x, mean spend m."""
        x, m = self._xm(X)
        n = len(x)
        if n < 2 or np.ptp(m) == 0:
            raise ConvergenceError(
                f"Gamma-Gamma: {n} customer(s) with repeat spend"
                + ("" if n < 2 else ", all with the same mean spend")
                + ": spend heterogeneity cannot be estimated; use a longer period"
            )
        # Sufficient statistics: only log(v + x m) needs every customer at each step; the
        # terms in x alone are summed over its few distinct values (measured in bench/clv.py:
        # the per-customer gammaln and digamma calls were most of the fitting time).
        ux, nx = np.unique(x, return_counts=True)
        xm = x * m
        s_xlogm, s_logm, s_xlogx = float(x @ np.log(m)), float(np.log(m).sum()), ux * np.log(ux)

        def total_ll(params: np.ndarray) -> tuple[float, np.ndarray]:
            p, q, v = params
            log_v_xm = np.log(v + xm)
            per_x = gammaln(p * ux + q) - gammaln(p * ux) + p * s_xlogx
            ll = (
                float(nx @ per_x)
                + n * (q * np.log(v) - gammaln(q))
                + p * s_xlogm
                - s_logm
                - p * float(x @ log_v_xm)
                - q * float(log_v_xm.sum())
            )
            return ll, log_v_xm

        def neg_ll(log_params: np.ndarray) -> float:
            params = np.exp(log_params)
            return -total_ll(params)[0] / n + self.penalizer * float(params @ params)

        def grad(log_params: np.ndarray) -> np.ndarray:
            p, q, v = params = np.exp(log_params)
            log_v_xm = np.log(v + xm)
            psi = digamma(p * ux + q)
            d_p = nx @ (ux * (psi - digamma(p * ux) + np.log(ux))) + s_xlogm - x @ log_v_xm
            d_q = nx @ psi - n * digamma(q) + n * np.log(v) - log_v_xm.sum()
            d_v = n * q / v - ((p * x + q) / (v + xm)).sum()
            g = np.array([d_p, d_q, d_v]) / n
            return -g * params + 2 * self.penalizer * params * params

        params, self.boundary_ = _fit(
            neg_ll,
            3,
            self.max_iter,
            jac=grad,
            names=("p", "q", "gamma"),
            model="Gamma-Gamma",
            on_boundary=self.on_boundary,
        )
        self.p_, self.q_, self.v_ = params
        self.log_likelihood_ = total_ll(np.array([self.p_, self.q_, self.v_]))[0]
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Expected mean spend per future purchase, shape (n_customers,); customers with no
        repeat purchase (x = 0) get the population mean."""
        check_is_fitted(self, "p_")
        X = check_array(X, dtype=float)
        x, m = X[:, 0], np.where(X[:, 0] > 0, X[:, 1], 0.0)
        p, q, v = self.p_, self.q_, self.v_
        return (v + x * m) * p / (p * x + q - 1)


@dataclass(frozen=True)
class Summary:
    """RFM summary of a transaction log at a calibration end (time unit: weeks)."""

    frame: pd.DataFrame  # index customer_id; columns x, t_x, T, m, x_spend, holdout_x (opt.)
    counts: dict[str, int] = field(default_factory=dict)  # what the amount policy did

    @property
    def X(self) -> np.ndarray:
        return self.frame[["x", "t_x", "T"]].to_numpy(float)

    @property
    def spend(self) -> pd.DataFrame:
        """Customers with positive repeat spend: (x_spend, m), what Gamma-Gamma fits on."""
        frame = self.frame
        return frame.loc[frame["x_spend"] > 0, ["x_spend", "m"]]


def summarize(
    transactions: pd.DataFrame, calibration_end: date, holdout_end: date | None = None
) -> Summary:
    """Summarise ``transactions`` (columns customer_id, date, amount) in weeks.

    Purchases on one day count as one transaction, their amounts netted; the amount policy
    of the module docstring applies. Customers whose first purchase is after
    ``calibration_end`` are left out. With ``holdout_end``, ``holdout_x`` counts purchase
    days in (calibration_end, holdout_end].
    """
    # Days in UTC; naive dates are taken as UTC.
    days = pd.to_datetime(transactions["date"], utc=True).dt.tz_localize(None).dt.normalize()
    tx = transactions.assign(date=days)
    daily = tx.groupby(["customer_id", "date"], as_index=False)["amount"].sum()
    counts = {
        "transactions": len(tx),
        "refund_days_left_out": int((daily["amount"] < 0).sum()),
        "zero_value_days": int((daily["amount"] == 0).sum()),
    }
    daily = daily[daily["amount"] >= 0]
    cal_end = pd.Timestamp(calibration_end)
    first = daily.groupby("customer_id")["date"].transform("min")
    counts["customers_after_calibration_end"] = int(
        daily.loc[first > cal_end, "customer_id"].nunique()
    )
    daily = daily[first <= cal_end].assign(first=first[first <= cal_end])
    cal = daily[daily["date"] <= cal_end]
    grouped = cal.groupby("customer_id")
    weeks = lambda delta: delta.dt.days / WEEK_DAYS  # noqa: E731
    frame = pd.DataFrame(
        {
            "x": grouped.size() - 1,
            "t_x": weeks(grouped["date"].max() - grouped["first"].min()),
            "T": weeks(cal_end - grouped["first"].min()),
        }
    )
    paid = cal[(cal["date"] > cal["first"]) & (cal["amount"] > 0)].groupby("customer_id")
    frame["m"] = paid["amount"].mean().reindex(frame.index).fillna(0.0)
    frame["x_spend"] = paid.size().reindex(frame.index).fillna(0).astype(int)
    if holdout_end is not None:
        hold = daily[(daily["date"] > cal_end) & (daily["date"] <= pd.Timestamp(holdout_end))]
        frame["holdout_x"] = hold.groupby("customer_id").size().reindex(frame.index).fillna(0)
    counts["customers"] = len(frame)
    return Summary(frame, counts)


def read_cdnow(path: Path) -> pd.DataFrame:
    """A CDNOW file (the master's 4-field or the sample's 5-field layout) as transactions
    (``models.clv_io.read_transactions``)."""
    from models.clv_io import read_transactions

    return read_transactions(path).reset_index(drop=True)


def customer_value(
    bgnbd: BetaGeoNBD,
    gamma_gamma: GammaGamma,
    summary: Summary,
    horizons_days: tuple[int, ...] = (90, 365),
) -> pd.DataFrame:
    """Per customer: P(alive), expected purchases and CLV (undiscounted) over each horizon."""
    X = summary.X
    spend = gamma_gamma.predict(summary.frame[["x_spend", "m"]].to_numpy(float))
    out = pd.DataFrame(index=summary.frame.index)
    out["p_alive"] = bgnbd.p_alive(X)
    for days in horizons_days:
        purchases = bgnbd.predict(X, days / WEEK_DAYS)
        out[f"expected_purchases_{days}d"] = purchases
        out[f"clv_{days}d"] = purchases * spend
    return out


def holdout_check(
    bgnbd: BetaGeoNBD, summary: Summary, weeks: float, max_x: int = 7
) -> pd.DataFrame:
    """Fader, Hardie & Lee's (2005) holdout check: by calibration frequency (0, 1, ...,
    ``max_x``+), customers, actual and predicted mean repeat purchases in the holdout of
    ``weeks`` weeks (a summary built with ``holdout_end``), and a total row."""
    frame = summary.frame
    if "holdout_x" not in frame:
        raise ValueError("the summary has no holdout: summarize(..., holdout_end=...)")
    predicted = bgnbd.predict(summary.X, weeks)
    bucket = frame["x"].clip(upper=max_x).astype(int)
    table = (
        pd.DataFrame({"x": bucket, "actual": frame["holdout_x"], "predicted": predicted})
        .groupby("x")
        .agg(
            customers=("actual", "size"),
            actual=("actual", "mean"),
            predicted=("predicted", "mean"),
        )
        .reset_index()
    )
    table["x"] = table["x"].map(lambda v: f"{v}+" if v == max_x else str(v))
    total = pd.DataFrame(
        [
            {
                "x": "all (sum)",
                "customers": len(frame),
                "actual": float(frame["holdout_x"].sum()),
                "predicted": float(predicted.sum()),
            }
        ]
    )
    return pd.concat([table, total], ignore_index=True)
