"""The published churn model inside a worker: loaded from the registry, never trusted.

Models are code, so a worker loads only what the registry published (issue 13). A
model-updated message names a version and a sha256; :class:`ModelHolder` reads that version
from its own registry folder only if the registry marks it as champion and the file hashes
to the sha256 in the message, the manifest and the champion pointer
(:meth:`forewarn.registry.Registry.read_champion`).

The file is a skops dump of ``{"estimator": <fitted classifier>, "features": [...],
"version": "..."}``, never a pickle: skops rebuilds objects from data and instantiates only
types on an allow-list, so a crafted file cannot run code when it is loaded. The allow-list
is skops' defaults (scikit-learn estimators, numpy arrays, builtins) plus
:data:`TRUSTED_TYPES`, the internals of the models the nightly trains
(``models.learner.make_estimator``); the loaded estimator must then be exactly that model.

Anything refused keeps the previous model in service (before any model is published the
detector runs on its points model alone) and says why.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from forewarn.events import ModelUpdated
from forewarn.registry import Registry, RegistryError
from models.customer_state import FEATURES

log = logging.getLogger(__name__)

#: Types skops does not trust by default that the nightly's models need. TreePredictor is off
#: skops' default list because its node indices are used without bounds checks (a crafted
#: file can crash ``predict``): it is trusted here only because the file's sha256 was checked
#: against what the nightly published. Bunch (a dict with attribute access) holds the stack's
#: named estimators.
TRUSTED_TYPES: tuple[str, ...] = (
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.utils._bunch.Bunch",
)


class ModelRejected(ValueError):
    """A published model that will not be used; the message says why."""


@dataclass(frozen=True)
class SklearnChurnModel:
    """A fitted scikit-learn classifier over ``FEATURES``."""

    version: str
    estimator: Any

    def score(self, features: dict[str, float]) -> float:
        x = np.array([[features[name] for name in FEATURES]], dtype=float)
        return float(self.estimator.predict_proba(x)[0, 1])


_HGB = "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingClassifier"
_STACK = "sklearn.ensemble._stacking.StackingClassifier"
_CALIBRATED = "sklearn.calibration.CalibratedClassifierCV"
#: The estimator classes the nightly fits (``models.learner.make_estimator``): a
#: ``StackingClassifier`` of gradient boosting and a scaled logistic regression, combined by a
#: logistic regression (issue 16); and, so that a champion published before it still loads,
#: the sigmoid ``CalibratedClassifierCV`` over gradient boosting it replaced.
ESTIMATOR_TYPES: frozenset[str] = frozenset(
    {
        _STACK,
        _HGB,
        "sklearn.pipeline.Pipeline",
        "sklearn.preprocessing._data.StandardScaler",
        "sklearn.linear_model._logistic.LogisticRegression",
        "sklearn.preprocessing._label.LabelEncoder",
        _CALIBRATED,
        "sklearn.calibration._CalibratedClassifier",
        "sklearn.calibration._SigmoidCalibration",
    }
)


def _type_name(obj: Any) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def _types(estimator: Any) -> set[str]:
    """The classes of ``estimator`` and of the fitted models inside it."""
    found = {_type_name(estimator)}
    top = _type_name(estimator)
    if top == _CALIBRATED:
        found.add(_type_name(estimator.estimator))
        for calibrated in getattr(estimator, "calibrated_classifiers_", []):
            found |= {_type_name(calibrated), _type_name(calibrated.estimator)}
            found |= {_type_name(c) for c in calibrated.calibrators}
    elif top == _STACK:
        inner = [*getattr(estimator, "estimators_", []), estimator.final_estimator_]
        if hasattr(estimator, "_label_encoder"):
            inner.append(estimator._label_encoder)
        for model in inner:
            found |= {_type_name(model)}
            found |= {_type_name(step) for _, step in getattr(model, "steps", [])}
    return found


def check_estimator_types(estimator: Any) -> None:
    """Raise :class:`ModelRejected` unless ``estimator`` and the models inside it are of
    :data:`ESTIMATOR_TYPES`, with a ``StackingClassifier`` (or, for a champion published
    before issue 16, a ``CalibratedClassifierCV``) on top."""
    found = _types(estimator)
    if _type_name(estimator) not in (_STACK, _CALIBRATED) or not found <= ESTIMATOR_TYPES:
        raise ModelRejected(
            f"estimator types {sorted(found)} are not the nightly's churn learner "
            "(models.learner.make_estimator): publish models only through the nightly"
        )


def read_bundle(data: bytes, version: str, trusted: Sequence[str] = TRUSTED_TYPES) -> dict:
    """A skops model file's bundle (a dict with an ``estimator``), its types checked against
    ``trusted`` before anything is built from the file; raise :class:`ModelRejected`."""
    import skops.io

    try:
        untrusted = sorted(set(skops.io.get_untrusted_types(data=data)) - set(trusted))
        if untrusted:
            raise ModelRejected(
                f"churn model {version} contains types not on the allow-list: {untrusted}"
            )
        bundle = skops.io.loads(data, trusted=list(trusted))
    except ModelRejected:
        raise
    except Exception as exc:  # not a zip, no schema, a type skops refuses: not this model
        raise ModelRejected(f"cannot load churn model {version}: {exc!r}"[:1000]) from None
    if not isinstance(bundle, dict) or "estimator" not in bundle:
        raise ModelRejected(f"churn model {version} is not a model bundle")
    return bundle


def load_model(data: bytes, version: str) -> SklearnChurnModel:
    """Load a skops model file's bytes and check the model; raise :class:`ModelRejected`.

    Untrusted types are refused before anything is built from the file.
    """
    bundle = read_bundle(data, version)
    features = list(bundle.get("features", []))
    if features != list(FEATURES):
        raise ModelRejected(
            f"churn model {version} expects features {bundle.get('features')}, the stream "
            f"computes {list(FEATURES)}: retrain it on the current feature set"
        )
    check_estimator_types(bundle["estimator"])
    model = SklearnChurnModel(version=version, estimator=bundle["estimator"])
    try:
        p = model.score(dict.fromkeys(FEATURES, 0.0))
    except Exception as exc:
        raise ModelRejected(f"churn model {version} fails to score: {exc!r}") from None
    if not 0.0 <= p <= 1.0:
        raise ModelRejected(f"churn model {version} scores {p}, outside [0, 1]")
    return model


def load_champion(registry: Registry, version: str, sha256: str) -> SklearnChurnModel:
    """Load ``version`` from ``registry`` if it is the champion and hashes to ``sha256``."""
    try:
        data, manifest = registry.read_champion(version, sha256)
    except RegistryError as exc:
        raise ModelRejected(f"churn model {version} refused: {exc}") from None
    if manifest.get("version") != version:
        raise ModelRejected(
            f"churn model {version}: its manifest names version {manifest.get('version')!r}"
        )
    features = list(manifest.get("features", []))
    if manifest.get("stream_compatible") is False:
        raise ModelRejected(
            f"churn model {version} also uses customer attributes "
            f"({', '.join(features[len(FEATURES) :][:5])}) the stream does not hold: the "
            "stream keeps its current model (the nightly's at-risk list uses this one)"
        )
    return load_model(data, version)


class ModelHolder:
    """The model in service. ``offer`` swaps it only for the registry's verified champion.

    Parameters
    ----------
    registry : Path
        The churn model's registry folder (``<FOREWARN_HOME>/models/churn``); nothing
        outside it is ever loaded.
    """

    def __init__(self, registry: Path) -> None:
        self.registry = Registry(registry)
        self.model: SklearnChurnModel | None = None
        self.sha256: str | None = None
        self.rejected: list[str] = []

    def offer(self, version: str, sha256: str) -> str | None:
        """Put ``version`` in service if it loads and checks out; return the refusal reason,
        or None when it is in service (already, or now)."""
        if self.model is not None and (self.model.version, self.sha256) == (version, sha256):
            return None
        try:
            model = load_champion(self.registry, version, sha256)
        except ModelRejected as exc:
            reason = str(exc)
            self.rejected.append(reason)
            log.error(
                "%s; keeping %s",
                reason,
                self.model.version if self.model else "the points model (no model yet)",
            )
            return reason
        self.model, self.sha256 = model, sha256
        log.info("churn model %s (sha256 %s) in service", version, sha256)
        return None

    def offer_newest(self, updates: Sequence[tuple[int, ModelUpdated]]) -> list[tuple[int, str]]:
        """Given ``(offset, update)`` pairs oldest first, put the newest that loads in service
        and return ``(offset, reason)`` for each refused. Older updates are not tried once one
        is in service: a worker reading the topic from the start loads the champion without
        re-judging the history before it."""
        refused = []
        for offset, update in reversed(updates):
            reason = self.offer(update.version, update.sha256)
            if reason is None:
                break
            refused.append((offset, reason))
        return refused
