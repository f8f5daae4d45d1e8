"""Churn on a plain labelled snapshot table: the nightly's learner, cross-validated beside
baselines on the same folds (``forewarn churn fit --table``).

A snapshot has no dates to split on, so the estimate is repeated stratified k-fold
cross-validation (5 x 5 by default, the protocol of ``../shared/data/bank_churn``): on each
fold the learner (``models.learner.make_estimator``), a default logistic regression, scikit-
learn's default gradient boosting and the class prior are fitted on the training part and
scored on the held-out part. Figures are means with Nadeau-Bengio corrected 95% intervals,
and the learner's paired difference to each baseline with its own interval
(``models.evaluation``). The model card uses the out-of-fold scores of the first repetition
(every row scored once by a model that did not see it) for calibration and metrics by group.

Examples
--------
>>> import numpy as np, pandas as pd
>>> from models.tables import LabelledTable
>>> rng = np.random.default_rng(0)
>>> X = pd.DataFrame({"tenure": rng.uniform(0, 60, 400), "plan": rng.choice(["a", "b"], 400)})
>>> y = ((X["tenure"] < 12) ^ (rng.random(400) < 0.1)).astype(int).to_numpy()
>>> table = LabelledTable(None, pd.Series(range(400)), X, y, ["tenure"], ["plan"], [], [])
>>> report = evaluate_table(table, n_splits=3, n_repeats=1)
>>> report.summary["learner"]["roc_auc"]["mean"] > 0.8
True
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.model_selection import RepeatedStratifiedKFold

from models.evaluation import cv_interval, metrics
from models.learner import baselines, make_estimator
from models.tables import LabelledTable, TableError

MODELS = ("learner", "logistic", "boosting_default", "dummy")
METRICS = ("roc_auc", "pr_auc", "brier", "lift_top_decile")
#: Categorical columns with at most this many levels get a row in the card's metrics by group.
GROUP_LEVELS_MAX = 12
#: Groups with fewer churners than this are shown without an AUC (it would be noise).
GROUP_CHURNERS_MIN = 10


@dataclass
class TableReport:
    """Fold scores, their summary and the out-of-fold scores of the first repetition."""

    folds: pd.DataFrame  # one row per fold and model: fold, model, roc_auc, pr_auc, ...
    summary: dict[str, dict[str, dict[str, float]]]  # model -> metric -> mean/low/high
    differences: dict[str, dict[str, float]]  # baseline -> ROC AUC difference mean/low/high
    out_of_fold: pd.DataFrame  # learner and baseline scores per row, first repetition
    n_splits: int
    n_repeats: int
    seed: int

    def beats_baselines(self) -> bool:
        """The learner's mean ROC AUC is at least the better non-dummy baseline's."""
        best = max(self.summary[m]["roc_auc"]["mean"] for m in ("logistic", "boosting_default"))
        return self.summary["learner"]["roc_auc"]["mean"] >= best


def _models(table: LabelledTable, seed: int) -> dict[str, Any]:
    return {
        "learner": make_estimator(seed, numeric=table.numeric, categorical=table.categorical),
        **baselines(table.numeric, table.categorical, seed),
    }


def _fold(
    models: dict[str, Any], X: pd.DataFrame, y: np.ndarray, train: np.ndarray, test: np.ndarray
) -> dict[str, np.ndarray]:
    scores = {}
    for name, model in models.items():
        fitted = clone(model).fit(X.iloc[train], y[train])
        scores[name] = fitted.predict_proba(X.iloc[test])[:, 1]
    return scores


def evaluate_table(
    table: LabelledTable,
    *,
    n_splits: int = 5,
    n_repeats: int = 5,
    seed: int = 0,
    jobs: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> TableReport:
    """Cross-validate the learner and the baselines on the same folds."""
    churners, stayers = int(table.y.sum()), int(len(table.y) - table.y.sum())
    if min(churners, stayers) < n_splits * 2:
        raise TableError(
            f"{table.path}: {churners} churners and {stayers} others; {n_splits}-fold "
            f"cross-validation needs at least {n_splits * 2} of each (fewer folds: --folds)"
        )
    models = _models(table, seed)
    splits = list(
        RepeatedStratifiedKFold(n_splits=n_splits, n_repeats=n_repeats, random_state=seed).split(
            table.X, table.y
        )
    )
    if jobs == 1:
        results = []
        for i, (train, test) in enumerate(splits):
            results.append(_fold(models, table.X, table.y, train, test))
            if progress:
                progress(i + 1, len(splits))
    else:
        from joblib import Parallel, delayed

        results = Parallel(n_jobs=jobs)(
            delayed(_fold)(models, table.X, table.y, train, test) for train, test in splits
        )
    rows = []
    out_of_fold = pd.DataFrame(index=table.X.index, columns=list(models), dtype=float)
    for i, ((_, test), scores) in enumerate(zip(splits, results, strict=True)):
        for name, p in scores.items():
            rows.append({"fold": i, "model": name, **metrics(table.y[test], p)})
            if i < n_splits:
                out_of_fold.iloc[test, out_of_fold.columns.get_loc(name)] = p
    folds = pd.DataFrame(rows)
    share = 1 / n_splits
    summary: dict[str, dict[str, dict[str, float]]] = {}
    for name in models:
        mine = folds[folds["model"] == name]
        summary[name] = {}
        for metric in METRICS:
            mean, low, high = cv_interval(mine[metric].to_numpy(), share)
            summary[name][metric] = {"mean": mean, "low": low, "high": high}
    learner = folds[folds["model"] == "learner"]["roc_auc"].to_numpy()
    differences = {}
    for name in ("logistic", "boosting_default"):
        other = folds[folds["model"] == name]["roc_auc"].to_numpy()
        mean, low, high = cv_interval(learner - other, share)
        differences[name] = {"mean": mean, "low": low, "high": high}
    out_of_fold["label"] = table.y
    return TableReport(folds, summary, differences, out_of_fold, n_splits, n_repeats, seed)


def fit_final(table: LabelledTable, seed: int = 0) -> Any:
    """The learner fitted on every row (what ``--out`` saves)."""
    return make_estimator(seed, numeric=table.numeric, categorical=table.categorical).fit(
        table.X, table.y
    )


def metrics_by_group(table: LabelledTable, report: TableReport) -> list[dict[str, Any]]:
    """Per level of each categorical column with few levels: rows, churners, observed rate,
    mean predicted probability and ROC AUC of the learner's out-of-fold scores."""
    rows = []
    oof = report.out_of_fold
    for column in table.categorical:
        values = table.X[column].fillna("(missing)")
        if values.nunique() > GROUP_LEVELS_MAX:
            continue
        for level, index in values.groupby(values).groups.items():
            y, p = oof.loc[index, "label"].to_numpy(int), oof.loc[index, "learner"].to_numpy()
            m = metrics(y, p)
            enough = min(m["positives"], m["rows"] - m["positives"]) >= GROUP_CHURNERS_MIN
            rows.append(
                {
                    "group": f"{column} = {level}",
                    "rows": m["rows"],
                    "churners": m["positives"],
                    "observed_rate": float(y.mean()),
                    "mean_predicted": float(p.mean()),
                    "roc_auc": m["roc_auc"] if enough else float("nan"),
                    "brier": m["brier"],
                }
            )
    return rows
