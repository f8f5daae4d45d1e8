"""Churn models published the nightly's way (skops file, manifest, champion pointer)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from forewarn.registry import Registry
from models.customer_state import FEATURES


def fitted_estimator(seed: int = 0, features: Sequence[str] = FEATURES) -> Any:
    """The nightly's estimator (``models.learner.make_estimator``) fitted on a toy rule: many
    low-CSAT contacts means churn. Fitted once per arguments (seconds on a busy machine);
    treat it as read-only."""
    return _fitted(seed, tuple(features))


@cache
def _fitted(seed: int, features: tuple[str, ...]) -> Any:
    from models.learner import make_estimator

    rng = np.random.default_rng(seed)
    x = rng.poisson(1.0, size=(200, len(features))).astype(float)
    column = list(features).index("low_csat_30d") if "low_csat_30d" in features else 0
    y = (x[:, column] > 1).astype(int)
    # The nightly's learner (tests/models checks it end to end) with fewer trees: the streams
    # tests should not wait for a real nightly model.
    model = make_estimator(seed)
    model.set_params(boosting__max_iter=20, boosting__max_leaf_nodes=7)
    return model.fit(x, y)


def model_bytes(version: str, estimator: Any = None, features: Sequence[str] = FEATURES) -> bytes:
    import skops.io

    estimator = estimator if estimator is not None else fitted_estimator(features=features)
    return skops.io.dumps({"estimator": estimator, "features": list(features), "version": version})


def publish(
    root: Path,
    version: str,
    data: bytes | None = None,
    promote: bool = True,
    trusted: bool = False,
) -> str:
    """Publish ``data`` (a fitted nightly model by default) as ``version`` in the registry at
    ``root``, promote it unless told not to; return its sha256. ``trusted`` records a passed
    promotion gate in the manifest (``ModelRegistry.trusted_champion`` then serves it)."""
    registry = Registry(root)
    data = data if data is not None else model_bytes(version)
    facts: dict[str, Any] = {"model_name": "churn", "features": FEATURES}
    if trusted:
        facts["gate"] = {"passed": True, "reason": "test model, gate recorded as passed"}
    manifest = registry.publish(version, data, facts)
    if promote:
        registry.promote(version)
    return manifest["sha256"]
