"""The sink hands tickets and customer values to the outreach store (issue 17): the plain
function the agent runs, on a real SQLite store, without Kafka."""

from __future__ import annotations

from forewarn.events import CustomerValue
from outreach.migrate import migrate
from outreach.store import TaskStore
from streams.outreach_sink.agents import apply_customer_event
from tests.utils import factories
from tests.utils.factories import T0


def test_a_cancellation_ticket_closes_the_customers_visit_and_values_rank_visits(tmp_path):
    url = f"sqlite:///{tmp_path / 'outreach.db'}"
    migrate(url)
    store = TaskStore(url)
    value = CustomerValue(
        event_id="v1",
        event_time=T0,
        customer_id="C00001",
        p_alive=0.8,
        expected_purchases_90d=1.0,
        clv_90d=100.0,
        clv_365d=400.0,
        value_tier="gold",
    )
    assert apply_customer_event(store, value) == []
    visit = store.upsert_alert(factories.alert())
    assert store.get(visit.task_id).value_tier == "gold"
    question = factories.ticket(category="question", event_id="q", ticket_id="q")
    assert apply_customer_event(store, question) == []
    cancel = factories.ticket(category="cancellation", event_id="c", ticket_id="c")
    assert apply_customer_event(store, cancel) == [visit.task_id]
    assert store.get(visit.task_id).status == "cancelled"
    store.close()
