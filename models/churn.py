"""Churn model: time-based training and evaluation, champion/challenger, a versioned registry.

Training rows come from :func:`models.features.build_features`: earlier cut-offs train, the
latest cut-off with a complete label window is the holdout. The challenger (gradient boosting
with calibrated probabilities) is scored on that holdout next to a ``DummyClassifier`` baseline
and the current champion; it is promoted only if its ROC AUC beats the champion's by
``margin``. The registry (``forewarn.registry``) keeps every version with its manifest
(sha256 of the model file), metadata and model card, and a ``champion.json`` pointer; the
saved bundle is what stream workers load (``{"estimator", "features", "version"}`` in skops'
format, never a pickle: issue 13).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.calibration import CalibratedClassifierCV, calibration_curve
from sklearn.dummy import DummyClassifier
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.inspection import permutation_importance
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score, roc_curve

from forewarn.registry import MODEL_FILE, Registry
from models.customer_state import FEATURES
from models.features import LABEL
from streams.customer_risk.model import load_champion, load_model

log = logging.getLogger(__name__)

PROMOTION_MARGIN = 0.005
#: Training rows kept at most (a uniform sample beyond it). Rows grow with customers and with
#: the lake's history (one per customer and weekly cut-off): 1M customers over 60 days give
#: 1.66M, a year would give ~50M. Twelve features do not need them all; training time would
#: grow without bound. The holdout is never sampled.
MAX_TRAIN_ROWS = 1_500_000
#: Holdout rows drawn for permutation importance in the model card: it predicts the holdout
#: 36 times (12 features x 3 repeats), the card's largest cost on a million-row holdout.
IMPORTANCE_ROWS = 100_000


def metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """ROC AUC, PR AUC, Brier score and lift in the top decile of scores."""
    y = np.asarray(y, dtype=int)
    top = np.argsort(-p)[: max(1, len(p) // 10)]
    base = y.mean() if len(y) else 0.0
    return {
        "roc_auc": float(roc_auc_score(y, p)) if 0 < y.sum() < len(y) else float("nan"),
        "pr_auc": float(average_precision_score(y, p)) if y.sum() else float("nan"),
        "brier": float(brier_score_loss(y, p)),
        "lift_top_decile": float(y[top].mean() / base) if base else float("nan"),
        "positives": int(y.sum()),
        "rows": len(y),
    }


def split(table: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train on every complete cut-off but the last, hold out the last complete one."""
    complete = table[table["label_complete"]]
    cutoffs = sorted(complete["cutoff"].unique())
    if len(cutoffs) < 2:
        raise ValueError(
            f"need at least 2 cut-offs with complete labels, got {len(cutoffs)}: "
            "let the lake grow, or use shorter cut-off spacing"
        )
    holdout_cutoff = cutoffs[-1]
    train = complete[complete["cutoff"] < holdout_cutoff]
    holdout = complete[complete["cutoff"] == holdout_cutoff]
    return train, holdout


def make_estimator(seed: int = 0) -> CalibratedClassifierCV:
    # Sigmoid calibration: isotonic overfits the few hundred positives of a nightly run.
    boosting = HistGradientBoostingClassifier(
        max_iter=200, learning_rate=0.05, max_leaf_nodes=15, random_state=seed
    )
    return CalibratedClassifierCV(boosting, method="sigmoid", cv=3)


@dataclass
class TrainingResult:
    version: str
    estimator: Any
    challenger: dict[str, float]
    baseline: dict[str, float]
    champion: dict[str, float] | None
    champion_version: str | None
    promoted: bool
    reason: str
    holdout: pd.DataFrame
    holdout_scores: np.ndarray
    train_rows: int


def train_and_evaluate(
    table: pd.DataFrame,
    registry: ModelRegistry,
    version: str,
    seed: int = 0,
    margin: float = PROMOTION_MARGIN,
    max_train_rows: int = MAX_TRAIN_ROWS,
) -> TrainingResult:
    train, holdout = split(table)
    if len(train) > max_train_rows:
        train = train.sample(n=max_train_rows, random_state=seed)
    if train[LABEL].nunique() < 2:
        raise ValueError("the training rows have a single class: no churn to learn from yet")
    x_train, y_train = train[list(FEATURES)].to_numpy(float), train[LABEL].to_numpy(int)
    x_hold, y_hold = holdout[list(FEATURES)].to_numpy(float), holdout[LABEL].to_numpy(int)
    estimator = make_estimator(seed).fit(x_train, y_train)
    scores = estimator.predict_proba(x_hold)[:, 1]
    challenger = metrics(y_hold, scores)
    dummy = DummyClassifier(strategy="prior").fit(x_train, y_train)
    baseline = metrics(y_hold, dummy.predict_proba(x_hold)[:, 1])
    champion_version, champion_metrics = None, None
    current = registry.champion()
    if current is not None:
        champion_version, bundle = current
        champion_metrics = metrics(y_hold, bundle["estimator"].predict_proba(x_hold)[:, 1])
    if champion_metrics is None:
        promoted = challenger["roc_auc"] > baseline["roc_auc"] + margin or np.isnan(
            baseline["roc_auc"]
        )
        reason = (
            "no champion yet; challenger beats the baseline"
            if promoted
            else "no champion yet, but the challenger does not beat the baseline"
        )
    else:
        promoted = challenger["roc_auc"] >= champion_metrics["roc_auc"] + margin
        reason = (
            f"ROC AUC {challenger['roc_auc']:.4f} vs champion "
            f"{champion_metrics['roc_auc']:.4f} (margin {margin})"
        )
    return TrainingResult(
        version,
        estimator,
        challenger,
        baseline,
        champion_metrics,
        champion_version,
        bool(promoted),
        reason,
        holdout,
        scores,
        len(train),
    )


class ModelRegistry:
    """The churn model's :class:`forewarn.registry.Registry`, plus metadata and model cards.

    Versions live under ``<root>/<version>/`` (model file, ``manifest.json`` with its sha256,
    ``metadata.json``, ``card.md``), the champion in ``champion.json``; all writes are atomic.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.files = Registry(self.root)

    def path(self, version: str) -> Path:
        return self.root / version / MODEL_FILE

    def save(self, result: TrainingResult, extra: dict[str, Any] | None = None) -> Path:
        """Publish the challenger's model file and manifest, its metadata and model card."""
        import skops.io

        champion = self.files.champion()
        if champion is not None and champion.get("version") == result.version:
            # A rerun of the day whose model is in service: workers verify the hash recorded
            # at its promotion, so the champion's file is never rewritten.
            log.warning("churn model %s is the champion: kept as published", result.version)
            return self.path(result.version)
        bundle = {
            "estimator": result.estimator,
            "features": list(FEATURES),
            "version": result.version,
        }
        data = skops.io.dumps(bundle)
        # Fail here, not in every worker: publish only what the workers' loader accepts.
        load_model(data, result.version)
        self.files.publish(
            result.version,
            data,
            {
                "model_name": "churn",
                "features": list(FEATURES),
                "metrics": {k: v for k, v in result.challenger.items() if isinstance(v, float)},
            },
        )
        folder = self.root / result.version
        metadata = {
            "version": result.version,
            "trained_at": datetime.now(UTC).isoformat(),
            "features": list(FEATURES),
            "train_rows": result.train_rows,
            "challenger": result.challenger,
            "baseline": result.baseline,
            "champion": result.champion,
            "champion_version": result.champion_version,
            "promoted": result.promoted,
            "reason": result.reason,
            **(extra or {}),
        }
        (folder / "metadata.json").write_text(json.dumps(metadata, indent=2, default=str))
        write_model_card(result, folder)
        return self.path(result.version)

    def promote(self, version: str) -> dict[str, Any]:
        """Make ``version`` the champion; return the pointer (``version``, ``sha256``)."""
        return self.files.promote(version)

    def champion(self) -> tuple[str, dict[str, Any]] | None:
        """The champion's version and bundle, loaded with the workers' checks."""
        pointer = self.files.champion()
        if pointer is None:
            return None
        version = pointer["version"]
        model = load_champion(self.files, version, pointer["sha256"])
        return version, {"estimator": model.estimator, "features": list(FEATURES)}


def write_model_card(result: TrainingResult, folder: Path) -> Path:
    """``card.md`` with the metrics table and plots: ROC, calibration, feature importance."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    y = result.holdout[LABEL].to_numpy(int)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    if 0 < y.sum() < len(y):
        fpr, tpr, _ = roc_curve(y, result.holdout_scores)
        axes[0].plot(fpr, tpr, label=f"challenger (AUC {result.challenger['roc_auc']:.3f})")
        axes[0].plot([0, 1], [0, 1], "--", color="grey", label="baseline")
        prob_true, prob_pred = calibration_curve(
            y, result.holdout_scores, n_bins=8, strategy="quantile"
        )
        axes[1].plot(prob_pred, prob_true, "o-", label="challenger")
    axes[1].plot([0, 1], [0, 1], "--", color="grey", label="perfect")
    axes[0].set(
        title="ROC on the holdout cut-off",
        xlabel="false positive rate",
        ylabel="true positive rate",
    )
    axes[1].set(title="Calibration", xlabel="predicted P(churn)", ylabel="observed churn rate")
    x_hold = result.holdout[list(FEATURES)].to_numpy(float)
    importance = (
        permutation_importance(
            result.estimator,
            x_hold,
            y,
            scoring="roc_auc",
            n_repeats=3,
            random_state=0,
            max_samples=min(len(y), IMPORTANCE_ROWS),
        )
        if 0 < y.sum() < len(y)
        else None
    )
    if importance is not None:
        order = np.argsort(importance.importances_mean)
        axes[2].barh([FEATURES[i] for i in order], importance.importances_mean[order])
    axes[2].set(title="Permutation importance (ROC AUC drop)")
    for ax in axes[:2]:
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(folder / "card.png", dpi=100)
    plt.close(fig)

    def row(name: str, m: dict[str, float] | None) -> str:
        if m is None:
            return f"| {name} | - | - | - | - |"
        return (
            f"| {name} | {m['roc_auc']:.3f} | {m['pr_auc']:.3f} | {m['brier']:.4f} | "
            f"{m['lift_top_decile']:.2f} |"
        )

    holdout_cutoff = result.holdout["cutoff"].iloc[0] if len(result.holdout) else "-"
    card = "\n".join(
        [
            f"# Churn model {result.version}",
            "",
            f"Holdout: cut-off {holdout_cutoff}, {len(result.holdout)} customers, "
            f"{int(y.sum())} churned within the label window. Promoted: "
            f"**{'yes' if result.promoted else 'no'}** ({result.reason}).",
            "",
            "| model | ROC AUC | PR AUC | Brier | lift top 10% |",
            "|---|---|---|---|---|",
            row("challenger (gradient boosting, calibrated)", result.challenger),
            row(f"champion {result.champion_version or ''}".strip(), result.champion),
            row("baseline (DummyClassifier, prior)", result.baseline),
            "",
            "![ROC, calibration and feature importance](card.png)",
            "",
            f"Features: {', '.join(FEATURES)}.",
        ]
    )
    (folder / "card.md").write_text(card + "\n")
    return folder / "card.md"
