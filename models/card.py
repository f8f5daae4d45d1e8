"""The churn model card, after Mitchell et al. (2019), "Model Cards for Model Reporting".

One writer for the nightly model and for ``forewarn churn fit --table``: ``card.md`` (intended
use, out-of-scope uses, label, data and counts, hyperparameters, metrics with intervals beside
the baselines, metrics by group, calibration, caveats, the promotion decision) and ``card.png``
(ROC, calibration, permutation importance). The Airflow plugin renders the same file.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

INTENDED_USE = (
    "Rank a business's current customers by their probability of cancelling within the label "
    "window, so a retention team with limited capacity calls the likeliest churners first; "
    "the probability (calibrated on labels) may be multiplied by a lifetime value to rank by "
    "value at risk."
)
OUT_OF_SCOPE = (
    "Decisions about an individual's credit, price, employment or legal treatment; any use "
    "on customers of another business or period without re-evaluation; reading a feature's "
    "importance as its cause (the model is associational; only an experiment such as the "
    "outreach holdout measures what calling does)."
)
#: Reliability-curve bins (equal counts, so every point rests on as many customers).
CALIBRATION_BINS = 10
#: Columns with more levels than this are not broken down by group.
GROUP_LEVELS_MAX = 12
#: Numeric columns with at most this many values (product counts, flags) count as groups.
NUMERIC_GROUP_VALUES_MAX = 5
#: A group's ROC AUC is shown only with at least this many churners and as many stayers.
GROUP_CHURNERS_MIN = 10


def metrics_by_group(columns: pd.DataFrame, y: np.ndarray, p: np.ndarray) -> list[dict[str, Any]]:
    """Per level of each column of ``columns`` (rows aligned with labels ``y`` and scores
    ``p``) that has few levels: rows, churners, observed rate, mean predicted probability,
    ROC AUC (where the group has enough of both classes) and Brier score.

    Examples
    --------
    >>> groups = pd.DataFrame({"plan": ["basic", "pro", "basic", "pro"]})
    >>> rows = metrics_by_group(groups, np.array([1, 0, 0, 0]), np.array([0.6, 0.1, 0.3, 0.2]))
    >>> [(r["group"], r["rows"], r["churners"], round(r["mean_predicted"], 2)) for r in rows]
    [('plan = basic', 2, 1, 0.45), ('plan = pro', 2, 0, 0.15)]
    """
    from models.evaluation import metrics

    rows = []
    for name in columns.columns:
        column = columns[name].reset_index(drop=True)
        numeric = pd.api.types.is_numeric_dtype(column)
        if numeric and column.nunique() > NUMERIC_GROUP_VALUES_MAX:
            continue
        values = column.astype(object).where(column.notna(), "(missing)")
        if values.nunique() > GROUP_LEVELS_MAX:
            continue
        for level, index in values.groupby(values).groups.items():
            yg, pg = y[np.asarray(index)], p[np.asarray(index)]
            m = metrics(yg, pg)
            enough = min(m["positives"], m["rows"] - m["positives"]) >= GROUP_CHURNERS_MIN
            shown = f"{level:g}" if isinstance(level, float) else str(level)
            rows.append(
                {
                    "group": f"{name} = {shown}",
                    "rows": m["rows"],
                    "churners": m["positives"],
                    "observed_rate": float(yg.mean()),
                    "mean_predicted": float(pg.mean()),
                    "roc_auc": m["roc_auc"] if enough else float("nan"),
                    "brier": m["brier"],
                }
            )
    return rows


@dataclass
class CardFacts:
    """What a card states. ``metrics`` maps a model's name to metric -> (mean, low, high)."""

    title: str
    label: str
    data: str
    evaluation: str
    hyperparameters: dict[str, Any]
    metrics: dict[str, dict[str, tuple[float, float, float]]]
    y: np.ndarray  # labels of the evaluation rows (out-of-fold or holdout)
    scores: dict[str, np.ndarray]  # each model's scores on those rows
    decision: str = ""
    groups: list[dict[str, Any]] = field(default_factory=list)
    importance: dict[str, float] | None = None
    caveats: list[str] = field(default_factory=list)
    signature: dict[str, str] = field(default_factory=dict)
    intended_use: str = INTENDED_USE
    out_of_scope: str = OUT_OF_SCOPE


def _fmt(value: float, digits: int = 3) -> str:
    return (
        "-"
        if value is None or (isinstance(value, float) and math.isnan(value))
        else (f"{value:.{digits}f}")
    )


def _interval(triple: tuple[float, float, float] | None, digits: int = 3) -> str:
    if triple is None:
        return "-"
    mean, low, high = triple
    if low is None or math.isnan(low):
        return _fmt(mean, digits)
    return f"{_fmt(mean, digits)} [{_fmt(low, digits)}, {_fmt(high, digits)}]"


def calibration_table(y: np.ndarray, p: np.ndarray, bins: int = CALIBRATION_BINS) -> list[dict]:
    """Equal-count bins of predicted probability: rows, mean predicted, observed rate."""
    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    order = np.argsort(p, kind="stable")
    rows = []
    for chunk in np.array_split(order, min(bins, len(p))):
        if len(chunk):
            rows.append(
                {
                    "rows": len(chunk),
                    "predicted": float(p[chunk].mean()),
                    "observed": float(y[chunk].mean()),
                }
            )
    return rows


def _plot(facts: CardFacts, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    y = np.asarray(facts.y, dtype=int)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    if 0 < y.sum() < len(y):
        for name, p in facts.scores.items():
            fpr, tpr, _ = roc_curve(y, p)
            axes[0].plot(fpr, tpr, label=name)
        main = next(iter(facts.scores))
        table = calibration_table(y, facts.scores[main])
        axes[1].plot(
            [r["predicted"] for r in table], [r["observed"] for r in table], "o-", label=main
        )
    axes[0].plot([0, 1], [0, 1], "--", color="grey", label="chance")
    axes[1].plot([0, 1], [0, 1], "--", color="grey", label="perfect")
    axes[0].set(title="ROC", xlabel="false positive rate", ylabel="true positive rate")
    axes[1].set(
        title="Calibration (equal-count bins)",
        xlabel="predicted P(churn)",
        ylabel="observed churn rate",
    )
    if facts.importance:
        names = sorted(facts.importance, key=facts.importance.get)
        axes[2].barh(names, [facts.importance[n] for n in names])
    axes[2].set(title="Permutation importance (ROC AUC drop)")
    for ax in axes[:2]:
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def render(facts: CardFacts) -> str:
    """The card as Markdown."""
    lines = [
        f"# {facts.title}",
        "",
        "## Intended use",
        facts.intended_use,
        "",
        "## Out of scope",
        facts.out_of_scope,
        "",
        "## Label",
        facts.label,
        "",
        "## Data",
        facts.data,
        "",
        "## Model",
        "A stack of gradient boosting and logistic regression, combined by a logistic "
        "regression on out-of-fold scores (probabilities calibrated on labels; "
        "`models/learner.py`).",
        "",
        "```",
        json.dumps(facts.hyperparameters, indent=2, default=str),
        "```",
    ]
    if facts.signature:
        lines += ["", "Features: " + ", ".join(f"`{k}` ({v})" for k, v in facts.signature.items())]
    lines += [
        "",
        "## Metrics",
        facts.evaluation,
        "",
        "| model | ROC AUC | PR AUC | Brier | lift top 10% |",
        "|---|---|---|---|---|",
    ]
    for name, m in facts.metrics.items():
        lines.append(
            f"| {name} | {_interval(m.get('roc_auc'))} | {_interval(m.get('pr_auc'))} | "
            f"{_interval(m.get('brier'), 4)} | {_interval(m.get('lift_top_decile'), 2)} |"
        )
    if facts.decision:
        lines += ["", f"**Decision:** {facts.decision}"]
    lines += ["", "## Metrics by group"]
    if facts.groups:
        lines += [
            "| group | rows | churners | observed rate | mean predicted | ROC AUC | Brier |",
            "|---|---|---|---|---|---|---|",
        ]
        for g in facts.groups:
            lines.append(
                f"| {g['group']} | {g['rows']} | {g['churners']} | {_fmt(g['observed_rate'])} | "
                f"{_fmt(g['mean_predicted'])} | {_fmt(g['roc_auc'])} | {_fmt(g['brier'], 4)} |"
            )
        lines.append("")
        lines.append("(ROC AUC left out where a group has fewer than 10 churners or stayers.)")
    else:
        lines.append("No group attributes in this data (region, segment, channel, value tier).")
    y = np.asarray(facts.y)
    lines += ["", "## Calibration"]
    if len(facts.scores) and 0 < y.sum() < len(y):
        main = next(iter(facts.scores))
        lines += [
            f"{main}, equal-count bins of the evaluation rows:",
            "",
            "| rows | mean predicted | observed churn rate |",
            "|---|---|---|",
            *(
                f"| {r['rows']} | {r['predicted']:.3f} | {r['observed']:.3f} |"
                for r in calibration_table(y, facts.scores[main])
            ),
        ]
    else:
        lines.append("Not measurable: the evaluation rows have a single class.")
    lines += ["", "![ROC, calibration and feature importance](card.png)", "", "## Caveats"]
    lines += [f"- {c}" for c in facts.caveats] or ["- none recorded"]
    return "\n".join(lines) + "\n"


def write_card(facts: CardFacts, folder: Path) -> Path:
    """Write ``card.md`` and ``card.png`` into ``folder``; return the card's path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _plot(facts, folder / "card.png")
    path = folder / "card.md"
    path.write_text(render(facts))
    return path
