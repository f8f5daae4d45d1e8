"""What a customer is worth and what is at risk: one definition for every screen (issue 17).

The outreach lists and their CSV export, the nightly's at-risk list and the Airflow page that
shows it all take the value at risk from :func:`value_at_risk`, and the value tier from the
nightly's customer values (``CustomerValue.value_tier``), so one customer shows the same
figures everywhere.
"""

from __future__ import annotations

from typing import TypeVar

T = TypeVar("T")


def value_at_risk(p_churn: T, clv_365d: T) -> T:
    """Value at risk = P(churn) x 365-day customer lifetime value, in EUR.

    Works on floats and on pandas columns alike.

    Examples
    --------
    >>> value_at_risk(0.4, 2500.0)
    1000.0
    """
    return p_churn * clv_365d  # type: ignore[operator]


def churn_probability(evidence: dict) -> float | None:
    """P(churn) from a churn alert's evidence: the churn model's ``p_churn`` (the nightly's, or
    the stream's when a model is in service); None when the alert carries none.

    The stream's ``risk`` is not one: it blends hand-set points, which averaged 0.21 where the
    churn rate was 0.04 (issue 16), so it is never multiplied into money.

    Examples
    --------
    >>> churn_probability({"p_churn": 0.31})
    0.31
    >>> churn_probability({"risk": 0.7}) is None
    True
    """
    p = evidence.get("p_churn")
    if isinstance(p, int | float) and 0 <= p <= 1:
        return float(p)
    return None
