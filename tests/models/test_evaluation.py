"""Metrics that do not depend on row order, and intervals that admit their noise."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import brier_score_loss, roc_auc_score

from models.evaluation import bootstrap, brier, cv_interval, roc_auc


@pytest.mark.parametrize("seed", range(3))
def test_weighted_auc_and_brier_match_scikit_learn_with_ties(seed):
    rng = np.random.default_rng(seed)
    y = (rng.random(800) < 0.15).astype(int)
    p = np.round(np.clip(rng.random(800) + 0.3 * y, 0, 1), 1)  # many ties
    w = rng.integers(0, 3, 800).astype(float)
    assert roc_auc(y, p, w) == pytest.approx(roc_auc_score(y, p, sample_weight=w), abs=1e-12)
    assert brier(y, p, w) == pytest.approx(brier_score_loss(y, p, sample_weight=w), abs=1e-12)


def test_the_corrected_interval_is_wider_than_the_naive_one():
    scores = np.random.default_rng(0).normal(0.86, 0.01, 25)
    _, low, high = cv_interval(scores, 0.2)
    naive = 2.064 * scores.std(ddof=1) / 5
    assert (high - low) / 2 > 2 * naive


def test_bootstrap_resamples_whole_customers():
    y = np.array([1, 1, 0, 0, 0, 0])
    groups = np.array(["a", "a", "b", "b", "c", "c"])
    # Rows of one customer are always drawn together: an AUC on their rows alone is
    # impossible, so every resample has both classes from whole customers.
    values = bootstrap(y, {"m": np.array([0.9, 0.8, 0.1, 0.2, 0.3, 0.4])}, roc_auc, groups, 50)
    assert len(values["m"]) == 50 and set(values["m"]) == {1.0}
