"""The churn learner, one definition for the nightly and for ``forewarn churn fit --table``.

A stack of two models whose out-of-fold scores a logistic regression combines: gradient
boosting (non-linear effects and interactions, native categorical splits) and a regularised
logistic regression (additive effects the trees approximate in steps). Neither wins on every
table: on a bank's attributes boosting beats the linear model by 0.09 ROC AUC, on a
telecom table the linear model ties or beats it (issue 16), and a stack is at least as good
as the better of the two up to noise. The final logistic regression is fitted on
out-of-fold scores against the labels (Platt scaling, Platt 1999), so the probabilities it
returns are calibrated on labels, never on the training fit itself.

Three inner folds keep the cost near the calibrated boosting it replaced (four boosting fits
instead of three plus calibration).

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> X = rng.normal(size=(300, 3))
>>> y = (X[:, 0] + rng.normal(size=300) > 1).astype(int)
>>> model = make_estimator(seed=0).fit(X, y)
>>> p = model.predict_proba(X)[:, 1]
>>> bool(p[y == 1].mean() > p[y == 0].mean())
True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sklearn.compose import ColumnTransformer
from sklearn.dummy import DummyClassifier
from sklearn.ensemble import HistGradientBoostingClassifier, StackingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

#: Inner folds of the stack (out-of-fold scores for the combining regression).
INNER_FOLDS = 3
#: A category seen fewer times than this in training is grouped with the other rare ones
#: (and with categories never seen, at scoring time): a level with a handful of rows is noise
#: to both models, and grouping keeps a surname-like column from exploding the linear model.
MIN_CATEGORY_ROWS = 10
#: Most levels kept per categorical column: gradient boosting's native categorical splits
#: take at most 255 bins, one of which is left for missing and unknown values.
MAX_CATEGORIES = 250


def boosting(seed: int = 0) -> HistGradientBoostingClassifier:
    """The boosting half: smaller steps and trees than scikit-learn's defaults, more of them.

    Fixed hyperparameters, not tuned per table: 200 trees of 15 leaves at learning rate 0.05.
    """
    return HistGradientBoostingClassifier(
        max_iter=200,
        learning_rate=0.05,
        max_leaf_nodes=15,
        categorical_features="from_dtype",
        random_state=seed,
    )


def linear() -> LogisticRegression:
    """The linear half (L2, C = 1, on standardised inputs)."""
    return LogisticRegression(max_iter=2000)


def _stack(boost: Any, lin: Any) -> StackingClassifier:
    return StackingClassifier(
        [("boosting", boost), ("linear", lin)],
        final_estimator=LogisticRegression(),
        cv=INNER_FOLDS,
        stack_method="decision_function",
    )


def make_estimator(
    seed: int = 0,
    *,
    numeric: Sequence[str] | None = None,
    categorical: Sequence[str] = (),
) -> StackingClassifier:
    """The learner, unfitted.

    Parameters
    ----------
    seed : int
        Seed of the boosting (the inner folds are stratified and unshuffled).
    numeric, categorical : sequence of str, optional
        Column names of a DataFrame input (the table path). Without them the input is a
        numeric array with no missing values (the nightly's stream features) and the model
        holds only the types stream workers allow (``streams/customer_risk/model.py``).
    """
    if numeric is None and not categorical:
        return _stack(boosting(seed), Pipeline([("scale", StandardScaler()), ("model", linear())]))
    numeric = list(numeric or [])
    categorical = list(categorical)
    ordinal = OrdinalEncoder(
        handle_unknown="use_encoded_value",
        unknown_value=-1,
        encoded_missing_value=-1,
        min_frequency=MIN_CATEGORY_ROWS,
        max_categories=MAX_CATEGORIES,
    )
    # Boosting: numbers as they are (missing values are native), categories as codes marked
    # categorical; unknown and missing categories become -1, which it treats as missing.
    boost = Pipeline(
        [
            (
                "encode",
                ColumnTransformer(
                    [("categories", ordinal, categorical), ("numbers", "passthrough", numeric)],
                    verbose_feature_names_out=False,
                ),
            ),
            (
                "model",
                HistGradientBoostingClassifier(
                    max_iter=200,
                    learning_rate=0.05,
                    max_leaf_nodes=15,
                    categorical_features=list(range(len(categorical))),
                    random_state=seed,
                ),
            ),
        ]
    )
    lin = Pipeline(
        [("encode", linear_encoding(numeric, categorical, rare=True)), ("model", linear())]
    )
    return _stack(boost, lin)


def linear_encoding(
    numeric: Sequence[str], categorical: Sequence[str], *, rare: bool
) -> ColumnTransformer:
    """Median-imputed (with a missing indicator) standardised numbers, one-hot categories."""
    numbers = Pipeline(
        [
            ("impute", SimpleImputer(strategy="median", add_indicator=True)),
            ("scale", StandardScaler()),
        ]
    )
    one_hot = (
        OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=MIN_CATEGORY_ROWS)
        if rare
        else OneHotEncoder(handle_unknown="ignore")
    )
    categories = Pipeline(
        [
            ("impute", SimpleImputer(strategy="constant", fill_value="(missing)")),
            ("encode", one_hot),
        ]
    )
    return ColumnTransformer(
        [("numbers", numbers, list(numeric)), ("categories", categories, list(categorical))]
    )


def baselines(numeric: Sequence[str], categorical: Sequence[str], seed: int = 0) -> dict[str, Any]:
    """The reference models every churn figure is reported beside, on the same columns.

    ``logistic``: standardised numbers and one-hot categories into a default logistic
    regression; ``boosting_default``: categories as ordinal codes into scikit-learn's default
    gradient boosting. These are the protocols of ``../shared/data/bank_churn/baselines.py``
    (ROC AUC 0.766 and 0.860 there), with median imputation added for missing numbers.
    ``dummy``: the class prior.
    """
    numeric, categorical = list(numeric), list(categorical)
    ordinal = Pipeline(
        [
            ("impute", SimpleImputer(strategy="constant", fill_value="(missing)")),
            ("encode", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1)),
        ]
    )
    return {
        "dummy": DummyClassifier(strategy="prior"),
        "logistic": Pipeline(
            [
                ("encode", linear_encoding(numeric, categorical, rare=False)),
                ("model", LogisticRegression(max_iter=1000)),
            ]
        ),
        "boosting_default": Pipeline(
            [
                (
                    "encode",
                    ColumnTransformer(
                        [("categories", ordinal, categorical)], remainder="passthrough"
                    ),
                ),
                (
                    "model",
                    HistGradientBoostingClassifier(categorical_features=None, random_state=seed),
                ),
            ]
        ),
    }
