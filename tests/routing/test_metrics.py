"""GET /metrics: routing's state as Prometheus reads it, counted from the real Redis."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from app import create_app
from runtime import wiring
from tests.chat.conftest import seat
from tests.routing.test_assignment import escalate, strategy

# Not on_cluster: in-process parts on one Redis (tests/chat/conftest.py's `live`).


@pytest.fixture
def scrape(live):
    app = create_app({"TESTING": True})
    app.extensions[wiring.EXTENSION] = live  # the parts a worker builds, on the suite's Redis
    client = app.test_client()

    def read() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        answer = client.get("/metrics")
        assert answer.status_code == 200, answer.text
        assert answer.headers["Content-Type"].startswith("text/plain; version=0.0.4; charset=utf-8")
        return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
                for family in text_string_to_metric_families(answer.text)
                for sample in family.samples}
    return read


def test_metrics_count_agents_their_load_and_each_queues_line(live, scrape):
    seat(live, "ada", max_chats=2)
    seat(live, "bob", presence="away")
    escalate(live, "v1")  # ada takes it
    figures = scrape()
    assert figures[("concierge_agents", (("presence", "available"),))] == 1
    assert figures[("concierge_agents", (("presence", "away"),))] == 1
    assert figures[("concierge_agent_conversations", ())] == 1
    assert figures[("concierge_agent_free_places", ())] == 1  # ada: 2 places, 1 held

    strategy(live, "manual")  # nobody is assigned: the next one waits in line
    escalate(live, "v2")
    figures = scrape()
    assert figures[("concierge_queue_waiting", (("queue", "support"),))] == 1
    assert figures[("concierge_queue_longest_wait_seconds", (("queue", "support"),))] >= 0
    assert figures[("concierge_queue_open", (("queue", "support"),))] == 1


def test_metrics_name_nobody(live, scrape):
    seat(live, "ada")
    escalate(live)
    app = create_app({"TESTING": True})
    app.extensions[wiring.EXTENSION] = live
    text = app.test_client().get("/metrics").text
    assert "ada" not in text.lower() and "c_" not in text  # counts only: no agent, no visitor


def test_without_redis_metrics_say_so_with_503():
    answer = create_app({"TESTING": True}).test_client().get("/metrics")
    assert answer.status_code == 503 and "Redis" in answer.text
