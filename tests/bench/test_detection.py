"""The SKAB scorer of bench/detection.py agrees with upstream's definitions on small cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bench import detection

pytestmark = pytest.mark.skipif(
    not (detection.SKAB / "valve1" / "0.csv").exists(), reason="SKAB data not present"
)


def _series(values, start="2020-03-09 10:00:00"):
    index = pd.date_range(start, periods=len(values), freq="1s")
    return pd.Series(np.asarray(values, float), index=index)


def test_outlier_scores_sum_confusion_counts_over_files():
    truth = [_series([0, 0, 1, 1]), _series([1, 1, 0, 0])]
    pred = [_series([0, 1, 1, 1]), _series([1, 0, 0, 0])]
    # TP 3, FP 1, FN 1, TN 3
    assert detection.outlier_scores(truth, pred) == {"f1": 0.75, "far": 25.0, "mar": 25.0}


def test_nab_is_100_for_a_perfect_detector_and_0_for_none():
    truth = _series([0] * 100 + [1] + [0] * 199)
    perfect = truth.copy()
    assert detection.nab_scores([truth], [perfect])["standard"] == 100.0
    none = truth * 0
    scores = detection.nab_scores([truth], [none])
    assert scores["standard"] == 0.0 and scores["missed_cps"] == 1
    late_and_false = _series([1] + [0] * 129 + [1] + [0] * 169)  # FP at 0, 30 s into the window
    scores = detection.nab_scores([truth], [late_and_false])
    assert scores["fps"] == 1 and 0 < scores["standard"] < 100


def test_changepoints_are_where_the_flags_change():
    flags = _series([1, 1, 0, 0, 1])
    assert detection.changepoints(flags).tolist() == [1, 0, 1, 0, 1]


def test_quick_run_gives_well_formed_results():
    results = {r.name: r for r in detection.run(quick=True)}
    assert set(results) == {"skab_outliers", "skab_changepoints"}
    for r in results.values():
        assert set(r.units) >= set(r.figures)
        assert isinstance(r.goal_met, bool)
