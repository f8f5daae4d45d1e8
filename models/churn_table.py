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

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
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
    unseen: dict[str, int]  # column -> held-out rows whose category their training fold lacked

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
    # Unknown categories are handled, not refused (models.learner): count them, per column,
    # over the first repetition (each row held out once).
    unseen = {}
    for column in table.categorical:
        values = table.X[column]
        count = sum(
            int(
                (
                    ~values.iloc[test].isin(set(values.iloc[train].dropna()))
                    & values.iloc[test].notna()
                ).sum()
            )
            for train, test in splits[:n_splits]
        )
        if count:
            unseen[column] = count
    return TableReport(folds, summary, differences, out_of_fold, n_splits, n_repeats, seed, unseen)


def fit_final(table: LabelledTable, seed: int = 0) -> Any:
    """The learner fitted on every row (what ``--out`` saves)."""
    return make_estimator(seed, numeric=table.numeric, categorical=table.categorical).fit(
        table.X, table.y
    )


def metrics_by_group(table: LabelledTable, report: TableReport) -> list[dict[str, Any]]:
    """:func:`models.card.metrics_by_group` of the learner's out-of-fold scores, over the
    table's categorical columns and its numeric ones with a handful of values."""
    from models.card import metrics_by_group as by_group

    oof = report.out_of_fold
    columns = table.X[[*table.categorical, *table.numeric]]
    return by_group(columns, oof["label"].to_numpy(int), oof["learner"].to_numpy())


def importance(model: Any, table: LabelledTable, seed: int = 0) -> dict[str, float]:
    """Permutation importance (ROC AUC drop) of each column, on at most 2,000 rows."""
    from sklearn.inspection import permutation_importance

    result = permutation_importance(
        model,
        table.X,
        table.y,
        scoring="roc_auc",
        n_repeats=3,
        random_state=seed,
        max_samples=min(len(table.y), 2000),
    )
    return dict(zip(table.X.columns, map(float, result.importances_mean), strict=True))


def table_card(
    table: LabelledTable, report: TableReport, importances: dict[str, float] | None = None
) -> Any:
    """The model card's facts for a table run (``models.card``)."""
    from models.card import CardFacts
    from models.learner import INNER_FOLDS, MAX_CATEGORIES, MIN_CATEGORY_ROWS

    names = {
        "learner": "learner (stack, calibrated)",
        "logistic": "baseline: logistic regression",
        "boosting_default": "baseline: default gradient boosting",
        "dummy": "baseline: DummyClassifier (prior)",
    }
    churners = int(table.y.sum())
    diff = report.differences
    decision = "; ".join(
        f"learner minus {name}: {d['mean']:+.4f} ROC AUC [{d['low']:+.4f}, {d['high']:+.4f}]"
        for name, d in diff.items()
    )
    oof = report.out_of_fold
    return CardFacts(
        title=f"Churn model on {table.path.name if table.path else 'a table'}",
        label=f"1 = the customer churned, as given by the table's label column "
        f"({churners} of {len(table.y)} rows, {churners / len(table.y):.1%}). A snapshot: "
        "the label's time window is whatever the table's owner defined.",
        data=f"{len(table.y)} rows, {churners} churners; columns: "
        f"{len(table.numeric)} numeric ({', '.join(table.numeric) or '-'}), "
        f"{len(table.categorical)} categorical ({', '.join(table.categorical) or '-'}). "
        + (" ".join(f"Note: {n}." for n in table.notes)),
        evaluation=f"Repeated stratified {report.n_splits}-fold cross-validation, "
        f"{report.n_repeats} repetitions (seed {report.seed}), every model on the same folds; "
        "mean over folds with a Nadeau-Bengio corrected 95% interval. Plots, calibration and "
        "groups use the out-of-fold scores of the first repetition.",
        hyperparameters={
            "boosting": {"max_iter": 200, "learning_rate": 0.05, "max_leaf_nodes": 15},
            "linear": {"C": 1.0, "penalty": "l2"},
            "stack": {"inner_folds": INNER_FOLDS, "combiner": "logistic regression"},
            "categories": {"min_rows": MIN_CATEGORY_ROWS, "max_levels": MAX_CATEGORIES},
        },
        metrics={
            names[m]: {k: (v["mean"], v["low"], v["high"]) for k, v in report.summary[m].items()}
            for m in MODELS
        },
        y=oof["label"].to_numpy(int),
        scores={names[m]: oof[m].to_numpy(float) for m in MODELS if m != "dummy"},
        decision=decision,
        groups=metrics_by_group(table, report),
        importance=importances,
        signature=table.signature(),
        caveats=[
            "Cross-validation on one snapshot estimates performance on customers like these, "
            "at this time; it does not measure drift. Re-evaluate before relying on it later.",
            "Metrics by group come from one repetition's out-of-fold scores; small groups "
            "have wide uncertainty.",
            "A column that is recorded after the customer left (a closing date, an exit "
            "survey) leaks the label; check the highest permutation importances.",
        ],
    )


def report_dict(table: LabelledTable, report: TableReport) -> dict[str, Any]:
    from models.tables import describe

    return {
        "table": describe(table),
        "protocol": {"folds": report.n_splits, "repeats": report.n_repeats, "seed": report.seed},
        "summary": report.summary,
        "learner_minus_baseline_roc_auc": report.differences,
        "beats_baselines": report.beats_baselines(),
        "unseen_categories": {
            "rows_by_column": report.unseen,
            "handling": "grouped with the rare categories (linear model) and treated as "
            "missing (boosting); counted over the first repetition",
        },
    }


def run_table(
    path: Path,
    out: Path,
    *,
    id_column: str | None = None,
    label_column: str | None = None,
    mapping_path: Path | None = None,
    n_splits: int = 5,
    n_repeats: int = 5,
    seed: int = 0,
    jobs: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Read, cross-validate, fit on every row and write ``out``: ``report.json``, the model
    card and ``model.skops``. Everything is written to a sibling folder first and moved into
    place at the end, so a failed run leaves nothing half-written."""
    import shutil

    import skops.io

    from models.card import write_card
    from models.tables import TableMapping, read_table

    mapping = TableMapping.from_yaml(mapping_path) if mapping_path else None
    table = read_table(path, id_column=id_column, label_column=label_column, mapping=mapping)
    report = evaluate_table(
        table, n_splits=n_splits, n_repeats=n_repeats, seed=seed, jobs=jobs, progress=progress
    )
    model = fit_final(table, seed)
    out = Path(out)
    staging = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    write_card(table_card(table, report, importance(model, table, seed)), staging)
    result = report_dict(table, report)
    (staging / "report.json").write_text(json.dumps(result, indent=2, default=str))
    report.folds.to_csv(staging / "folds.csv", index=False)
    (staging / "model.skops").write_bytes(
        skops.io.dumps(
            {"estimator": model, "signature": table.signature(), "columns": list(table.X.columns)}
        )
    )
    if out.exists():
        shutil.rmtree(out)
    staging.rename(out)
    return result
