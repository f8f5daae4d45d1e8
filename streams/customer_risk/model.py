"""The published churn model inside a worker: loaded on a model-updated event, never trusted.

A model file is a joblib dump of ``{"estimator": <fitted classifier with predict_proba>,
"features": [...], "version": "..."}`` written by the nightly DAG. A file that cannot be
loaded, or whose features are not the stream's ``FEATURES``, is refused with a reason and the
previous model stays in service; before any model is published the detector runs on its
points model alone.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np

from streams.customer_risk.detector import FEATURES

log = logging.getLogger(__name__)


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


def load_model(uri: str, version: str) -> SklearnChurnModel:
    """Load and check a model file; raise :class:`ModelRejected` with the reason."""
    import joblib

    path = Path(urlparse(uri).path) if uri.startswith("file:") else Path(uri)
    try:
        bundle = joblib.load(path)
    except Exception as exc:  # any unpickling problem means: not this model
        raise ModelRejected(f"cannot load churn model {version} from {path}: {exc!r}") from None
    if not isinstance(bundle, dict) or "estimator" not in bundle:
        raise ModelRejected(f"churn model {version} at {path} is not a model bundle")
    if list(bundle.get("features", [])) != list(FEATURES):
        raise ModelRejected(
            f"churn model {version} expects features {bundle.get('features')}, the stream "
            f"computes {list(FEATURES)}: retrain it on the current feature set"
        )
    model = SklearnChurnModel(version=version, estimator=bundle["estimator"])
    try:
        p = model.score(dict.fromkeys(FEATURES, 0.0))
    except Exception as exc:
        raise ModelRejected(f"churn model {version} fails to score: {exc!r}") from None
    if not 0.0 <= p <= 1.0:
        raise ModelRejected(f"churn model {version} scores {p}, outside [0, 1]")
    return model


class ModelHolder:
    """The model in service. ``offer`` swaps it only for one that loads and checks out."""

    def __init__(self) -> None:
        self.model: SklearnChurnModel | None = None
        self.rejected: list[str] = []

    def offer(self, uri: str, version: str) -> bool:
        if self.model is not None and self.model.version == version:
            return False
        try:
            self.model = load_model(uri, version)
        except ModelRejected as exc:
            self.rejected.append(str(exc))
            log.error(
                "%s; keeping %s",
                exc,
                self.model.version if self.model else "the points model (no model yet)",
            )
            return False
        log.info("churn model %s in service", version)
        return True

    def offer_newest(self, updates: list[tuple[str, str]]) -> None:
        """Given ``(uri, version)`` updates oldest first, put the newest that loads in service
        (a worker reading the topic from the start must not end up with no model because the
        very last one is broken)."""
        for uri, version in reversed(updates):
            if (self.model is not None and self.model.version == version) or self.offer(
                uri, version
            ):
                return
