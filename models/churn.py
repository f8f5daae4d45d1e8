"""Churn model: time-based training and evaluation, a promotion gate, a versioned registry.

Training rows come from :func:`models.features.build_features`: earlier cut-offs train, the
latest complete cut-offs (up to ``HOLDOUT_CUTOFFS``, at most half of them) are the holdout.
The challenger (``models.learner.make_estimator``, probabilities calibrated on labels) is
scored on the holdout next to a ``DummyClassifier`` and the current champion, and promoted
only through :func:`promotion_gate`: paired bootstrap intervals over customers, the
challenger's ROC AUC interval above 0.5, its Brier score better than the dummy's, and,
when there is a champion, the lower bound of the AUC difference above ``margin`` (issue 16:
a single cut-off with a dozen churners has an AUC standard error of 0.07-0.09, and a 0.509
model was promoted on it). The registry (``forewarn.registry``) keeps every version with its
manifest (sha256 of the model file), metadata and model card, and a ``champion.json``
pointer; the saved bundle is what stream workers load (``{"estimator", "features",
"version"}`` in skops' format, never a pickle: issue 13).
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
from sklearn.dummy import DummyClassifier
from sklearn.inspection import permutation_importance

from forewarn.registry import MODEL_FILE, Registry
from models.customer_attributes import PREFIX as CRM_PREFIX
from models.customer_state import FEATURES
from models.evaluation import bootstrap, brier, metrics, percentile_interval, ranks, roc_auc
from models.features import LABEL
from models.learner import make_estimator
from streams.customer_risk.model import TRUSTED_TYPES, ModelRejected, load_model, read_bundle

log = logging.getLogger(__name__)

PROMOTION_MARGIN = 0.005
#: Complete cut-offs pooled into the holdout (at most half of those available): one weekly
#: cut-off holds a dozen churners in a small business, too few to tell models apart.
HOLDOUT_CUTOFFS = 4
#: Training rows kept at most (a uniform sample beyond it). Rows grow with customers and with
#: the lake's history (one per customer and weekly cut-off): 1M customers over 60 days give
#: 1.66M, a year would give ~50M. Twelve features do not need them all; training time would
#: grow without bound. The holdout is never sampled.
MAX_TRAIN_ROWS = 1_500_000
#: Holdout rows drawn for permutation importance in the model card: it predicts the holdout
#: 36 times (12 features x 3 repeats), the card's largest cost on a million-row holdout.
IMPORTANCE_ROWS = 100_000
#: Types skops does not trust by default that the learner on customer attributes adds to
#: the stream model's (``streams.customer_risk.model.TRUSTED_TYPES``): its encoders validate
#: input through ``check_array`` partials. Trusted by the nightly only, for files whose sha256
#: it published; stream workers never load such a model (they hold no attributes).
ATTRIBUTE_TRUSTED_TYPES = (
    "functools.partial",
    "numpy.dtype",
    "sklearn.utils.validation.check_array",
)


#: Columns of the features table that group the model card's metrics but are never features
#: (the value tier as of the nightly's day: ``models.nightly.train_churn_model``).
GROUP_ONLY = ("value_tier_today",)


@dataclass(frozen=True)
class Columns:
    """The model's input: the stream's features, then imported attributes (issue 16)."""

    numeric: list[str]
    categorical: list[str]

    @property
    def names(self) -> list[str]:
        return [*self.numeric, *self.categorical]

    @property
    def stream_only(self) -> bool:
        """The stream's twelve features alone: a model stream workers can load and score."""
        return self.names == list(FEATURES)

    @classmethod
    def of(cls, bundle: dict[str, Any]) -> Columns:
        categorical = list(bundle.get("categorical", []))
        return cls([c for c in bundle["features"] if c not in categorical], categorical)


def model_columns(table: pd.DataFrame) -> Columns:
    """The stream's features and the imported customer attributes (``crm_*``, as of each
    cut-off: ``models.customer_attributes``) that have values in ``table``."""
    crm = [c for c in table.columns if c.startswith(CRM_PREFIX) and table[c].notna().any()]
    numeric = [c for c in crm if pd.api.types.is_numeric_dtype(table[c])]
    return Columns([*FEATURES, *numeric], [c for c in crm if c not in numeric])


def model_input(frame: pd.DataFrame, columns: Columns) -> Any:
    """What the estimator takes: the stream's float array, or a DataFrame with the attributes
    (a column the frame lacks is missing for every row; the learner handles missing values)."""
    if columns.stream_only:
        return frame[list(FEATURES)].to_numpy(float)
    out = frame.reindex(columns=columns.names)
    for name in columns.numeric:
        out[name] = pd.to_numeric(out[name], errors="coerce").astype(float)
    for name in columns.categorical:
        out[name] = out[name].astype(object).where(out[name].notna(), None)
    return out


def predict(bundle: dict[str, Any], frame: pd.DataFrame) -> np.ndarray:
    """P(churn) of each row of ``frame`` under a loaded model ``bundle``, shape (n_rows,)."""
    return bundle["estimator"].predict_proba(model_input(frame, Columns.of(bundle)))[:, 1]


def load_bundle(data: bytes, version: str) -> dict[str, Any]:
    """A published churn model for the nightly's own use: a stream model with the workers'
    checks (``load_model``), or a model on attributes with the attribute learner's types
    allowed too. Raises ``ModelRejected``."""
    bundle = read_bundle(data, version, [*TRUSTED_TYPES, *ATTRIBUTE_TRUSTED_TYPES])
    if "features" not in bundle:
        raise ModelRejected(f"churn model {version} is not a model bundle")
    columns = Columns.of(bundle)
    if columns.stream_only:
        model = load_model(data, version)
        return {"estimator": model.estimator, "features": list(FEATURES), "categorical": []}
    if columns.numeric[: len(FEATURES)] != list(FEATURES):
        raise ModelRejected(f"churn model {version} does not start with the stream's features")
    return {"estimator": bundle["estimator"], **_columns_record(columns)}


def _columns_record(columns: Columns) -> dict[str, list[str]]:
    return {"features": columns.names, "categorical": columns.categorical}


def split(
    table: pd.DataFrame, holdout_cutoffs: int = HOLDOUT_CUTOFFS
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train on the complete cut-offs before the holdout; the holdout is the last
    ``holdout_cutoffs`` complete ones (at most half of them, at least one)."""
    complete = table[table["label_complete"]]
    cutoffs = sorted(complete["cutoff"].unique())
    if len(cutoffs) < 2:
        raise ValueError(
            f"need at least 2 cut-offs with complete labels, got {len(cutoffs)}: "
            "let the lake grow, or use shorter cut-off spacing"
        )
    first_holdout = cutoffs[-max(1, min(holdout_cutoffs, len(cutoffs) // 2))]
    train = complete[complete["cutoff"] < first_holdout]
    holdout = complete[complete["cutoff"] >= first_holdout]
    return train, holdout


#: Holdout rows the gate's bootstrap runs on at most (whole customers sampled beyond it): 1M
#: customers x 4 cut-offs took 6 minutes; 250,000 rows take seconds and still give ROC AUC
#: intervals of about +-0.005.
GATE_ROWS_MAX = 250_000


def _sample_customers(groups: np.ndarray, rows: int, seed: int) -> np.ndarray:
    """Row indices of randomly drawn whole groups, at most ``rows`` of them, in row order."""
    codes, members = np.unique(groups, return_inverse=True)
    order = np.random.default_rng(seed).permutation(len(codes))
    sizes = np.bincount(members)[order]
    chosen = np.zeros(len(codes), dtype=bool)
    chosen[order[np.cumsum(sizes) <= rows]] = True
    return np.flatnonzero(chosen[members])


@dataclass
class Gate:
    """The promotion decision and the intervals it rests on."""

    passed: bool
    reason: str
    intervals: dict[str, tuple[float, float, float]]  # name -> (estimate, low, high)


def promotion_gate(
    y: np.ndarray,
    challenger: np.ndarray,
    dummy: np.ndarray,
    champion: np.ndarray | None = None,
    *,
    groups: np.ndarray | None = None,
    margin: float = PROMOTION_MARGIN,
    seed: int = 0,
) -> Gate:
    """Promote only a challenger that is better than a coin, than the prior and than the
    champion, each judged by a 95% paired bootstrap interval over customers.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> y = (rng.random(2000) < 0.1).astype(int)
    >>> coin = rng.random(2000)                     # a coin-flip challenger
    >>> gate = promotion_gate(y, coin, np.full(2000, y.mean()))
    >>> gate.passed, gate.reason.split(";")[0]
    (False, 'ROC AUC 0.482 [0.439, 0.525] includes 0.5: no better than chance')
    """
    y = np.asarray(y, dtype=int)
    scores = {"challenger": challenger, "dummy": dummy}
    if champion is not None:
        scores["champion"] = champion
    if len(y) > GATE_ROWS_MAX:
        # Whole customers drawn at random until GATE_ROWS_MAX rows: the intervals are those
        # of the smaller sample, so wider, never narrower (the safe side for a gate).
        keep = _sample_customers(
            np.arange(len(y)) if groups is None else np.asarray(groups), GATE_ROWS_MAX, seed
        )
        y, groups = y[keep], None if groups is None else np.asarray(groups)[keep]
        scores = {name: np.asarray(p)[keep] for name, p in scores.items()}
        challenger, dummy = scores["challenger"], scores["dummy"]
        champion = scores.get("champion")
    ranked = {name: ranks(p) for name, p in scores.items()}  # ranked once, not per resample
    aucs = bootstrap(y, ranked, roc_auc, groups=groups, seed=seed)
    briers = bootstrap(y, scores, brier, groups=groups, seed=seed)

    def interval(point: float, values: np.ndarray) -> tuple[float, float, float]:
        return (point, *percentile_interval(values))

    auc = interval(roc_auc(y, challenger), aucs["challenger"])
    brier_gain = interval(
        brier(y, challenger) - brier(y, dummy), briers["challenger"] - briers["dummy"]
    )
    intervals = {"roc_auc": auc, "brier_minus_dummy": brier_gain}
    failures = []
    if not auc[1] > 0.5:
        failures.append(
            f"ROC AUC {auc[0]:.3f} [{auc[1]:.3f}, {auc[2]:.3f}] includes 0.5: no better than chance"
        )
    if not brier_gain[2] < 0:
        failures.append(
            f"Brier score not better than the dummy's: difference {brier_gain[0]:+.4f} "
            f"[{brier_gain[1]:+.4f}, {brier_gain[2]:+.4f}]"
        )
    if champion is not None:
        gain = interval(
            roc_auc(y, challenger) - roc_auc(y, champion), aucs["challenger"] - aucs["champion"]
        )
        intervals["roc_auc_minus_champion"] = gain
        if not gain[1] > margin:
            failures.append(
                f"not better than the champion by {margin}: ROC AUC difference {gain[0]:+.4f} "
                f"[{gain[1]:+.4f}, {gain[2]:+.4f}]"
            )
    if failures:
        return Gate(False, "; ".join(failures), intervals)
    versus = "the champion" if champion is not None else "chance and the prior (no champion)"
    return Gate(
        True,
        f"ROC AUC {auc[0]:.3f} [{auc[1]:.3f}, {auc[2]:.3f}], Brier better than the dummy's, "
        f"better than {versus}",
        intervals,
    )


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
    gate: Gate | None = None
    baseline_scores: np.ndarray | None = None
    champion_scores: np.ndarray | None = None
    columns: Columns = Columns(list(FEATURES), [])


def train_and_evaluate(
    table: pd.DataFrame,
    registry: ModelRegistry,
    version: str,
    seed: int = 0,
    margin: float = PROMOTION_MARGIN,
    max_train_rows: int = MAX_TRAIN_ROWS,
    estimator: Any = None,
) -> TrainingResult:
    """Fit the challenger (``estimator``, default the learner) on the training cut-offs, score
    it, the dummy and the champion on the holdout, and apply :func:`promotion_gate`."""
    train, holdout = split(table)
    if len(train) > max_train_rows:
        train = train.sample(n=max_train_rows, random_state=seed)
    if train[LABEL].nunique() < 2:
        raise ValueError("the training rows have a single class: no churn to learn from yet")
    columns = model_columns(train)
    x_train, y_train = model_input(train, columns), train[LABEL].to_numpy(int)
    x_hold, y_hold = model_input(holdout, columns), holdout[LABEL].to_numpy(int)
    if estimator is None:
        estimator = (
            make_estimator(seed)
            if columns.stream_only
            else make_estimator(seed, numeric=columns.numeric, categorical=columns.categorical)
        )
    estimator = estimator.fit(x_train, y_train)
    scores = estimator.predict_proba(x_hold)[:, 1]
    challenger = metrics(y_hold, scores)
    dummy = DummyClassifier(strategy="prior").fit(x_train, y_train)
    dummy_scores = dummy.predict_proba(x_hold)[:, 1]
    baseline = metrics(y_hold, dummy_scores)
    champion_version, champion_metrics, champion_scores = None, None, None
    current = registry.champion()
    if current is not None:
        champion_version, bundle = current
        champion_scores = predict(bundle, holdout)
        champion_metrics = metrics(y_hold, champion_scores)
    if 0 < y_hold.sum() < len(y_hold):
        gate = promotion_gate(
            y_hold,
            scores,
            dummy_scores,
            champion_scores,
            groups=holdout["customer_id"].to_numpy(),
            margin=margin,
            seed=seed,
        )
    else:
        gate = Gate(False, "the holdout has a single class: nothing to judge a model on", {})
    return TrainingResult(
        version,
        estimator,
        challenger,
        baseline,
        champion_metrics,
        champion_version,
        gate.passed,
        gate.reason,
        holdout,
        scores,
        len(train),
        gate,
        dummy_scores,
        champion_scores,
        columns,
    )


def code_version() -> str:
    """The git commit of this checkout (``+dirty`` with local changes), or the package's
    version when it is not a git checkout."""
    import subprocess

    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit, dirty = "", ""
    if commit:
        return commit + ("+dirty" if dirty else "")
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"forewarn {version('forewarn')}"
    except PackageNotFoundError:
        return "unknown"


def environment() -> dict[str, str]:
    """Python and the versions of the libraries a model file depends on."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version()}
    for name in ("scikit-learn", "numpy", "scipy", "pandas", "skops"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


def gate_record(gate: Gate | None) -> dict[str, Any]:
    """The gate's decision as JSON (kept in the manifest: the at-risk list trusts a champion
    only if it passed)."""
    if gate is None:
        return {"passed": False, "reason": "not judged"}
    return {"passed": gate.passed, "reason": gate.reason, "intervals": gate.intervals}


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

    def save(
        self,
        result: TrainingResult,
        extra: dict[str, Any] | None = None,
        lineage: dict[str, Any] | None = None,
    ) -> Path:
        """Publish the challenger as a new immutable version: model file, manifest (sha256,
        signature, metrics, gate, lineage, environment), metadata and model card, all at once.

        The version is ``result.version`` (the day) unless that is taken by other bytes; then
        the next free ``<day>.N`` (a rerun never rewrites a published version, least of all
        the champion's). ``result.version`` is updated to the version published.
        """
        import tempfile

        import skops.io

        columns = result.columns
        bundle = {"estimator": result.estimator, **_columns_record(columns)}
        data = skops.io.dumps(bundle | {"version": result.version})
        version = self.files.free_version(result.version, data)
        if version != result.version:
            log.warning("churn model %s is published: this one is %s", result.version, version)
            data = skops.io.dumps(bundle | {"version": version})
        result.version = version
        # Fail here, not in every worker: publish only what the loaders accept (a model on
        # customer attributes is the nightly's alone: workers refuse it and say why).
        load_bundle(data, version)
        if (self.root / version).exists():
            return self.path(version)  # these very bytes are published already
        metadata = {
            "version": version,
            "trained_at": datetime.now(UTC).isoformat(),
            "features": columns.names,
            "categorical": columns.categorical,
            "train_rows": result.train_rows,
            "challenger": result.challenger,
            "baseline": result.baseline,
            "champion": result.champion,
            "champion_version": result.champion_version,
            "promoted": result.promoted,
            "reason": result.reason,
            "gate": gate_record(result.gate),
            **(extra or {}),
        }
        with tempfile.TemporaryDirectory() as tmp:
            write_model_card(result, Path(tmp))
            files = {name: (Path(tmp) / name).read_bytes() for name in ("card.md", "card.png")}
        files["metadata.json"] = json.dumps(metadata, indent=2, default=str).encode()
        self.files.publish(
            version,
            data,
            {
                "model_name": "churn",
                "features": columns.names,
                "signature": {
                    "inputs": {
                        **dict.fromkeys(columns.numeric, "float64"),
                        **dict.fromkeys(columns.categorical, "category"),
                    },
                    "output": "P(churn)",
                },
                "stream_compatible": columns.stream_only,
                "metrics": {k: v for k, v in result.challenger.items() if isinstance(v, float)},
                "gate": gate_record(result.gate),
                "lineage": {
                    "code": code_version(),
                    "parameters": {
                        k: v
                        for k, v in getattr(result.estimator, "get_params", dict)().items()
                        if isinstance(v, int | float | str | bool | type(None))
                    },
                    "train_rows": result.train_rows,
                    "holdout_rows": len(result.holdout),
                    **(lineage or {}),
                },
                "environment": environment(),
            },
            files,
        )
        return self.path(version)

    def promote(self, version: str, reason: str = "promoted") -> dict[str, Any]:
        """Make ``version`` the champion; return the pointer (``version``, ``sha256``)."""
        return self.files.promote(version, reason)

    def trusted_champion(self) -> tuple[str, dict[str, Any]] | None:
        """The champion if it passed :func:`promotion_gate` (its manifest says so), else None:
        a champion promoted before the gate existed is not trusted with probabilities."""
        pointer = self.files.champion()
        if pointer is None or not self.files.manifest(pointer["version"]).get("gate", {}).get(
            "passed"
        ):
            return None
        return self.champion()

    def champion(self) -> tuple[str, dict[str, Any]] | None:
        """The champion's version and bundle (``estimator``, ``features``, ``categorical``),
        its file checked against the pointer's sha256 (:func:`load_bundle`)."""
        from forewarn.registry import RegistryError

        pointer = self.files.champion()
        if pointer is None:
            return None
        version = pointer["version"]
        try:
            data, manifest = self.files.read_champion(version, pointer["sha256"])
        except RegistryError as exc:
            raise ModelRejected(f"churn model {version} refused: {exc}") from None
        if manifest.get("version") != version:
            raise ModelRejected(
                f"churn model {version}: its manifest names version {manifest.get('version')!r}"
            )
        return version, load_bundle(data, version)


def write_model_card(result: TrainingResult, folder: Path) -> Path:
    """``card.md`` and ``card.png`` (``models.card``): the holdout's metrics with bootstrap
    intervals beside the dummy and the champion, calibration, importance, the decision."""
    from models.card import CardFacts, metrics_by_group, write_card
    from models.customer_attributes import PREFIX as CRM_PREFIX
    from models.learner import INNER_FOLDS

    holdout = result.holdout
    y = holdout[LABEL].to_numpy(int)
    both = 0 < y.sum() < len(y)
    importance = None
    if both:
        found = permutation_importance(
            result.estimator,
            model_input(holdout, result.columns),
            y,
            scoring="roc_auc",
            n_repeats=3,
            random_state=0,
            max_samples=min(len(y), IMPORTANCE_ROWS),
        )
        importance = dict(
            zip(result.columns.names, map(float, found.importances_mean), strict=True)
        )
    intervals = result.gate.intervals if result.gate else {}

    def row(m: dict[str, float] | None, auc: tuple | None = None) -> dict[str, tuple]:
        if m is None:
            return {}
        out = {
            k: (m[k], float("nan"), float("nan")) for k in ("pr_auc", "brier", "lift_top_decile")
        }
        out["roc_auc"] = auc or (m["roc_auc"], float("nan"), float("nan"))
        return out

    # Groups from the customers' imported attributes as of each cut-off (``crm_*``,
    # models.customer_attributes): plan, contract, region, segment, when a CRM was imported.
    attributes = [c for c in holdout.columns if c.startswith(CRM_PREFIX)]
    grouping = [c for c in GROUP_ONLY if c in holdout.columns] + attributes
    groups = metrics_by_group(holdout[grouping], y, result.holdout_scores) if grouping else []
    cutoffs = sorted(holdout["cutoff"].unique()) if len(holdout) else []
    customers = holdout["customer_id"].nunique() if len(holdout) else 0
    scores = {"challenger": result.holdout_scores}
    if result.champion_scores is not None:
        scores[f"champion {result.champion_version}"] = result.champion_scores
    facts = CardFacts(
        title=f"Churn model {result.version}",
        label="1 = the customer cancelled (a cancellation ticket) within 30 days after the "
        "cut-off; features from events before the cut-off only (models/features.py).",
        data=f"Training: {result.train_rows} customer x cut-off rows before "
        f"{cutoffs[0] if cutoffs else '-'}. Holdout: cut-offs "
        f"{', '.join(str(c)[:10] for c in cutoffs)}; {len(holdout)} rows of {customers} "
        f"customers, {int(y.sum())} churned within the label window.",
        evaluation="Holdout cut-offs after every training cut-off. ROC AUC with a 95% "
        "bootstrap interval over customers (paired across models); the other metrics are "
        "point estimates.",
        hyperparameters={
            "boosting": {"max_iter": 200, "learning_rate": 0.05, "max_leaf_nodes": 15},
            "linear": {"C": 1.0, "penalty": "l2"},
            "stack": {"inner_folds": INNER_FOLDS, "combiner": "logistic regression"},
            "max_train_rows": MAX_TRAIN_ROWS,
        },
        metrics={
            "challenger": row(result.challenger, intervals.get("roc_auc")),
            **(
                {f"champion {result.champion_version}": row(result.champion)}
                if result.champion
                else {}
            ),
            "baseline (DummyClassifier, prior)": row(result.baseline),
        },
        y=y,
        scores=scores,
        decision=f"promoted: {'yes' if result.promoted else 'no'} ({result.reason}).",
        importance=importance,
        signature={
            **dict.fromkeys(result.columns.numeric, "numeric"),
            **dict.fromkeys(result.columns.categorical, "categorical"),
        },
        groups=groups,
        caveats=[
            (
                "Trained on the stream's behavioural features and the imported customer "
                f"attributes ({', '.join(result.columns.names[len(FEATURES) :])}), each as of "
                "its cut-off. Stream workers cannot score this model (they hold no "
                "attributes): the stream keeps its points score, the at-risk list uses it."
            )
            if not result.columns.stream_only
            else "Trained on the stream's behavioural features only; no customer attributes "
            "were imported (forewarn import customers): groups are by value tier alone."
            if not attributes
            else "Trained on the stream's behavioural features only.",
            *(
                ["Value tiers are today's (the nightly's lifetime values), not each cut-off's."]
                if GROUP_ONLY[0] in holdout.columns
                else []
            ),
            "The label counts cancellations raised as tickets; customers who leave silently "
            "are labelled as staying.",
            "Cut-offs are weekly, so one customer appears in several holdout rows; intervals "
            "resample whole customers.",
        ],
    )
    return write_card(facts, folder)
