"""GET /metrics: what routing knows now, in Prometheus's text format.

Every figure is read from Redis when Prometheus scrapes, so any worker of any instance answers
the same: how many agents are available, away or offline, their open conversations and free
places, and each queue's line (waiting, the longest wait, open by its hours). No names, ids or
visitor data: counts only (docs/operating.md, "Metrics").
"""

from __future__ import annotations

from collections.abc import Iterator

import redis as redis_lib
from flask import Blueprint, Response
from prometheus_client import generate_latest
from prometheus_client.core import CollectorRegistry, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.registry import Collector

from routing.desk import AVAILABLE, AWAY, OFFLINE
from runtime import wiring

bp = Blueprint("metrics", __name__)

PRESENCES = (AVAILABLE, AWAY, OFFLINE)


class _Routing(Collector):
    """Routing's state as gauges, read at each scrape (the leads' `team` view, counted)."""

    def __init__(self, live: wiring.Live) -> None:
        self.live = live

    def collect(self) -> Iterator[GaugeMetricFamily]:
        team = self.live.desk.team(fresh=True)
        agents = GaugeMetricFamily("concierge_agents", "Agents by presence (offline: no live "
                                   "socket)", labels=["presence"])
        counts = dict.fromkeys(PRESENCES, 0)
        for agent in team["agents"]:
            counts[agent["presence"]] = counts.get(agent["presence"], 0) + 1
        for presence, count in counts.items():
            agents.add_metric([presence], count)
        yield agents
        yield GaugeMetricFamily("concierge_agent_conversations", "Conversations agents hold now",
                                value=sum(agent["open"] for agent in team["agents"]))
        yield GaugeMetricFamily(
            "concierge_agent_free_places", "Places free with available agents (max_chats less "
            "what they hold)", value=sum(max(agent["max_chats"] - agent["open"], 0)
                                         for agent in team["agents"]
                                         if agent["presence"] == AVAILABLE))
        waiting = GaugeMetricFamily("concierge_queue_waiting", "Conversations waiting for a "
                                    "person", labels=["queue"])
        longest = GaugeMetricFamily("concierge_queue_longest_wait_seconds", "How long the "
                                    "conversation first in line has waited", labels=["queue"])
        open_now = GaugeMetricFamily("concierge_queue_open", "1 while the queue's opening hours "
                                     "hold, else 0", labels=["queue"])
        for line in team["queues"]:
            waiting.add_metric([line["name"]], line["waiting"])
            longest.add_metric([line["name"]], line["longest_wait_s"])
            open_now.add_metric([line["name"]], 1 if line["open"] else 0)
        yield from (waiting, longest, open_now)


@bp.get("/metrics")
def metrics() -> Response:
    """Answer Prometheus: routing's gauges now, or 503 (plain text) when they cannot be read."""
    live = wiring.current_live()
    if live is None:
        return Response("no Redis configured\n", 503, mimetype="text/plain")
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Routing(live))
    try:
        body = generate_latest(registry)
    except (redis_lib.RedisError, OSError):
        return Response("Redis does not answer\n", 503, mimetype="text/plain")
    return Response(body, content_type=CONTENT_TYPE_PLAIN_0_0_4)  # what every Prometheus reads
