"""At-risk customers and negative feedback: windows, hysteresis, reasons, value, models."""

from __future__ import annotations

import json
import os
import pickle
from datetime import timedelta
from pathlib import Path

import pytest

from forewarn.events import CustomerValue, InvalidEvent, ModelUpdated, decode, encode
from forewarn.registry import MANIFEST, MODEL_FILE, VERSION_PATTERN, Registry, sha256_hex
from models.customer_state import FEATURES, CustomerState
from streams.customer_risk.detector import CustomerRiskDetector, NegativeFeedbackDetector
from streams.customer_risk.model import ModelHolder, ModelRejected, load_model
from tests.utils import factories
from tests.utils.factories import T0
from tests.utils.models import fitted_estimator, model_bytes, publish


def _ticket(day: float, n: int = 1, **overrides):
    fields = dict(
        event_id=f"T{day}-{n}",
        event_time=T0 + timedelta(days=day),
        ticket_id=f"T{day}",
        category="question",
        status="resolved",
        contact_number=n,
        csat=None,
        nps=None,
        ces_agree=None,
        first_contact_resolution=None,
        text="hi",
    )
    return factories.ticket(**(fields | overrides))


def _order(day: float, status: str = "placed", amount: float = 80.0, n: int = 0):
    return factories.order(
        event_id=f"O{day}-{n}-{status}",
        order_id=f"O{day}-{n}",
        event_time=T0 + timedelta(days=day),
        status=status,
        amount=amount,
    )


def _run(events, detector=None, model=None):
    detector = detector or CustomerRiskDetector()
    state = CustomerState()
    alerts = [a for e in events if (a := detector.update(state, e, model))]
    return state, alerts


def test_a_content_customer_is_not_flagged():
    events = [_order(d, n=i) for i, d in enumerate(range(0, 60, 12))]
    events += [_ticket(20, csat=5, nps=9)]
    _, alerts = _run(sorted(events, key=lambda e: e.event_time))
    assert alerts == []


def test_a_worsening_customer_is_flagged_once_with_reasons():
    events = [_order(0, n=0), _order(0.5, "late", n=0), _order(5, n=1), _order(6, "cancelled", n=1)]
    events += [_ticket(6 + i, n=2, category="complaint", csat=1, nps=2) for i in range(3)]
    state, alerts = _run(sorted(events, key=lambda e: e.event_time))
    assert len(alerts) == 1, "hysteresis: one alert while the customer stays at risk"
    (alert,) = alerts
    assert alert.kind == "churn_risk" and alert.dedup_key == "retention:C00001"
    assert "low CSAT" in alert.explanation or "cancelled" in alert.explanation
    assert alert.evidence["features"]["cancelled_orders_30d"] == 1
    assert state.at_risk


def test_windows_forget_what_is_older_than_30_days():
    state = CustomerState()
    detector = CustomerRiskDetector()
    detector.update(state, _ticket(0, csat=1))
    detector.update(state, _ticket(40, csat=5))
    assert state.features()["low_csat_30d"] == 0
    assert state.features()["tickets_30d"] == 1


def test_unresolved_ticket_age_and_repeat_contacts():
    state = CustomerState()
    detector = CustomerRiskDetector()
    detector.update(state, _ticket(0, status="opened", ticket_id="X", event_id="X-1"))
    detector.update(state, _ticket(2, n=2, status="updated", ticket_id="X", event_id="X-2"))
    features = state.features()
    assert features["unresolved_age_h"] == 48
    assert features["repeat_contacts_30d"] == 1


def test_order_gap_against_the_customers_own_rhythm():
    state = CustomerState()
    detector = CustomerRiskDetector()
    for i, day in enumerate((0, 10, 20, 30)):
        detector.update(state, _order(day, n=i))
    detector.update(state, _ticket(60))
    assert state.features()["order_gap_ratio"] == pytest.approx(3.0)


def test_risk_leaves_the_at_risk_state_only_below_exit():
    detector = CustomerRiskDetector(enter=0.5, exit=0.3, escalate=1.0)
    events = [_ticket(i, n=3, category="complaint", csat=1, nps=1) for i in range(3)]
    state, alerts = _run(events, detector)
    assert state.at_risk and len(alerts) == 1
    detector.update(state, _ticket(45, csat=5))  # a month later, all is well
    assert not state.at_risk


def test_state_round_trips_through_json():
    events = [_order(0), _ticket(1, csat=2, status="opened")]
    state, _ = _run(events)
    again = CustomerState.from_dict(json.loads(json.dumps(state.to_dict())))
    assert again == state


def test_negative_feedback_opens_one_task_per_ticket_ordered_by_value():
    state, detector = CustomerState(), NegativeFeedbackDetector()
    CustomerRiskDetector().update(
        state,
        CustomerValue(
            event_id="v",
            event_time=T0,
            customer_id="C00001",
            p_alive=0.9,
            expected_purchases_90d=2,
            clv_90d=300,
            clv_365d=1200,
            value_tier="platinum",
        ),
    )
    first = detector.update(state, _ticket(1, csat=1, ticket_id="T9", event_id="T9-1"))
    again = detector.update(state, _ticket(1.1, n=2, csat=1, ticket_id="T9", event_id="T9-2"))
    assert first is not None and again is None
    assert first.kind == "negative_feedback" and first.dedup_key == "feedback:T9"
    assert first.severity == "critical" and first.score == 1200
    assert "CSAT 1/5" in first.explanation
    assert detector.update(state, _ticket(2, csat=4, nps=8)) is None


def test_feedback_from_a_customer_without_published_value_uses_spend():
    state, risk = CustomerState(), CustomerRiskDetector()
    for i in range(4):
        risk.update(state, _order(i * 7, amount=80, n=i))
    alert = NegativeFeedbackDetector().update(state, _ticket(25, nps=2))
    assert alert.evidence["value_tier"] == "gold" and alert.severity == "high"


class TestChurnModel:
    @pytest.fixture
    def registry(self, tmp_path):
        """A registry whose champion is v1 (a worker's ``<home>/models/churn``)."""
        root = tmp_path / "models" / "churn"
        publish(root, "v1")
        return root

    def _sha(self, root, version):
        return Registry(root).manifest(version)["sha256"]

    def test_the_champion_loads_and_is_blended_in(self, registry):
        holder = ModelHolder(registry)
        assert holder.offer("v1", self._sha(registry, "v1")) is None
        events = [_ticket(i, csat=1) for i in range(3)]
        _, with_model = _run(events, model=holder.model)
        assert with_model and "churn model v1" in with_model[0].explanation

    def test_a_broken_file_keeps_the_model_in_service(self, registry):
        holder = ModelHolder(registry)
        holder.offer("v1", self._sha(registry, "v1"))
        sha = publish(registry, "v2", b"not a model")
        assert holder.offer("v2", sha) is not None
        assert holder.model.version == "v1"
        assert "cannot load churn model v2" in holder.rejected[0]

    def test_a_model_on_other_features_is_refused(self):
        features = ["a", "low_csat_30d"]
        data = model_bytes("old", fitted_estimator(features=features), features=features)
        with pytest.raises(ModelRejected, match="retrain it on the current feature set"):
            load_model(data, "old")

    def test_a_message_naming_a_path_is_refused_before_any_file_is_read(self, registry):
        sha = self._sha(registry, "v1")
        forged = {**json.loads(encode(_update("v1", sha))), "version": "../../../tmp/evil"}
        with pytest.raises(InvalidEvent, match="version"):
            decode("model-updates", json.dumps(forged).encode())
        holder = ModelHolder(registry)
        for version in ("../v1", "/tmp/evil.joblib", "file:///tmp/evil.joblib", ".."):
            assert "is not a plain id" in holder.offer(version, sha)
        assert holder.model is None

    def test_a_v1_message_with_a_uri_never_decodes(self):
        v1 = {
            "schema_version": 1,
            "event_id": "m1",
            "event_time": "2026-01-05T00:00:00Z",
            "model_name": "churn",
            "version": "v1",
            "uri": "file:///tmp/evil.joblib",
        }
        with pytest.raises(InvalidEvent, match=r"unknown schema_version 1 .*known: 2"):
            decode("model-updates", json.dumps(v1).encode())

    def test_the_message_and_the_registry_agree_on_the_version_pattern(self):
        (pattern,) = [m.pattern for m in ModelUpdated.model_fields["version"].metadata]
        assert pattern == VERSION_PATTERN

    def test_a_version_outside_the_registry_is_refused(self, registry, tmp_path):
        elsewhere = tmp_path / "elsewhere"
        sha = publish(elsewhere, "evil")
        (registry / "evil").symlink_to(elsewhere / "evil")
        # Even a champion pointer naming it (written by whoever placed the symlink).
        pointer = {"version": "evil", "sha256": sha}
        (registry / "champion.json").write_text(json.dumps(pointer))
        holder = ModelHolder(registry)
        assert "is not a folder inside" in holder.offer("evil", sha)
        assert holder.model is None

    def test_a_symlinked_model_file_is_refused(self, registry, tmp_path):
        sha = self._sha(registry, "v1")
        outside = tmp_path / "outside.skops"
        outside.write_bytes((registry / "v1" / MODEL_FILE).read_bytes())
        (registry / "v1" / MODEL_FILE).unlink()
        (registry / "v1" / MODEL_FILE).symlink_to(outside)
        assert "not a regular file" in ModelHolder(registry).offer("v1", sha)

    def test_a_wrong_hash_in_the_message_is_refused(self, registry):
        holder = ModelHolder(registry)
        reason = holder.offer("v1", "0" * 64)
        assert "the model-updated message says 000" in reason
        assert holder.model is None and holder.rejected == [reason]

    def test_a_model_file_changed_after_publication_is_refused(self, registry):
        sha = self._sha(registry, "v1")
        (registry / "v1" / MODEL_FILE).write_bytes(model_bytes("v1", fitted_estimator(seed=3)))
        assert "the manifest says" in ModelHolder(registry).offer("v1", sha)
        # Rewriting the manifest too (by hand: the registry never rewrites a published
        # version) is caught by the pointer written at promotion.
        data = model_bytes("v1", fitted_estimator(seed=3))
        manifest = json.loads((registry / "v1" / MANIFEST).read_text())
        tampered = {**manifest, "sha256": sha256_hex(data)}
        (registry / "v1" / MANIFEST).write_text(json.dumps(tampered))
        (registry / "v1" / MODEL_FILE).write_bytes(data)
        reason = ModelHolder(registry).offer("v1", tampered["sha256"])
        assert "the champion pointer says" in reason

    def test_a_pickle_placed_as_the_model_is_never_executed(self, registry, tmp_path):
        marker = tmp_path / "pwned"
        payload = pickle.dumps(_Exploit(marker))
        # The worst case: whoever placed it also published and promoted it, hash and all.
        sha = publish(registry, "v2", payload)
        holder = ModelHolder(registry)
        reason = holder.offer("v2", sha)
        assert "cannot load churn model v2" in reason
        assert not marker.exists(), "unpickling ran the payload"
        assert holder.model is None

    def test_a_skops_file_with_an_untrusted_type_is_refused(self, registry, tmp_path):
        import skops.io

        data = skops.io.dumps({"estimator": os.system, "features": list(FEATURES)})
        sha = publish(registry, "v2", data)
        reason = ModelHolder(registry).offer("v2", sha)
        assert "not on the allow-list" in reason and "system" in reason

    def test_an_estimator_the_nightly_does_not_train_is_refused(self, registry):
        import numpy as np
        from sklearn.linear_model import LogisticRegression

        x = np.random.default_rng(0).poisson(1.0, size=(50, len(FEATURES))).astype(float)
        other = LogisticRegression().fit(x, (x[:, 0] > 1).astype(int))
        sha = publish(registry, "v2", model_bytes("v2", other))
        reason = ModelHolder(registry).offer("v2", sha)
        assert "are not the nightly's churn learner" in reason

    def test_a_stack_holding_a_foreign_model_is_refused(self, registry):
        import numpy as np
        from sklearn.ensemble import StackingClassifier
        from sklearn.linear_model import LogisticRegression
        from sklearn.naive_bayes import GaussianNB

        x = np.random.default_rng(0).poisson(1.0, size=(60, len(FEATURES))).astype(float)
        stack = StackingClassifier(
            [("bayes", GaussianNB()), ("linear", LogisticRegression())], cv=3
        ).fit(x, (x[:, 0] > 1).astype(int))
        sha = publish(registry, "v2", model_bytes("v2", stack))
        reason = ModelHolder(registry).offer("v2", sha)
        assert "GaussianNB" in reason and "not the nightly's churn learner" in reason

    def test_a_champion_published_before_the_stack_still_loads(self, registry):
        import numpy as np
        from sklearn.calibration import CalibratedClassifierCV
        from sklearn.ensemble import HistGradientBoostingClassifier

        x = np.random.default_rng(0).poisson(1.0, size=(100, len(FEATURES))).astype(float)
        boosting = HistGradientBoostingClassifier(max_iter=5)
        old = CalibratedClassifierCV(boosting, method="sigmoid", cv=3)
        sha = publish(registry, "v0", model_bytes("v0", old.fit(x, (x[:, 0] > 1).astype(int))))
        assert ModelHolder(registry).offer("v0", sha) is None

    def test_a_rollback_by_message_is_refused(self, registry):
        old = self._sha(registry, "v1")
        new = publish(registry, "v2")
        holder = ModelHolder(registry)
        assert holder.offer("v2", new) is None
        reason = holder.offer("v1", old)
        assert "v1 is not the registry's champion (v2)" in reason
        assert holder.model.version == "v2"

    def test_a_rollback_in_the_registry_is_followed(self, registry):
        old = self._sha(registry, "v1")
        new = publish(registry, "v2")
        holder = ModelHolder(registry)
        holder.offer("v2", new)
        Registry(registry).promote("v1")
        assert holder.offer("v1", old) is None and holder.model.version == "v1"


class _Exploit:
    """Unpickling this creates ``marker``: proof that a loader executed the file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _update(version: str, sha256: str) -> ModelUpdated:
    return ModelUpdated(
        event_id=f"m-{version}",
        event_time=T0,
        model_name="churn",
        version=version,
        sha256=sha256,
    )


def test_a_sharp_rise_in_risk_refreshes_the_alert():
    events = [_ticket(i, n=3, category="complaint", csat=1, nps=1) for i in range(3)]
    _, alerts = _run(events, CustomerRiskDetector(escalate=0.2))
    assert len(alerts) == 2
    assert alerts[1].evidence["risk"] >= alerts[0].evidence["risk"] + 0.2
    assert {a.dedup_key for a in alerts} == {"retention:C00001"}, "same task, refreshed"


def test_a_worker_reading_history_keeps_the_champion_when_newer_messages_are_forged(tmp_path):
    root = tmp_path / "churn"
    v1 = publish(root, "v1")
    v2 = publish(root, "v2")
    history = [(0, _update("v1", v1)), (1, _update("v2", v2)), (2, _update("v1", v1))]
    holder = ModelHolder(root)
    refused = holder.offer_newest(history)
    assert holder.model.version == "v2"
    assert [offset for offset, _ in refused] == [2], "the replayed v1 is refused, v2 loads"
    assert "not the registry's champion" in refused[0][1]
    assert holder.offer_newest(history[:2]) == [], "history before the champion is not retried"
