"""Races between agents and visitors on two instances (two gunicorns, 2 workers each, one Redis):
however the frames interleave, one conversation goes to one agent, and no agent gets more than
its max_chats. Agents' sockets are split across the instances, and so are the visitors'.
"""

from __future__ import annotations

import threading

import pytest

from tests.conftest import Store
from tests.support.ws import VisitorSocket, frame_like, quiet_for
from tests.web.agent_fixtures import (
    ASK,
    ROUTING_PREFIX,
    assigned_frame,
    cid_of,
    escalate,
    flow_of,
    queued_with_position,
    routing_files_fixture,  # noqa: F401 - a fixture
    routing_second_fixture,  # noqa: F401 - a fixture
    routing_server_fixture,  # noqa: F401 - a fixture
    routing_team_fixture,  # noqa: F401 - a fixture
    waiting_at,
)

pytestmark = pytest.mark.on_cluster  # also run on a Redis Cluster (make test)

ACCEPTERS = 8
ROUNDS = 10
VISITORS = 12
SLOTS = 2  # max_chats of each of the three agents of the capacity race
QUIET_S = 0.5


def test_of_eight_simultaneous_accepts_exactly_one_wins_round_after_round(
        routing_team, routing_server, routing_second, open_visitor, redis):
    instances = (routing_server, routing_second)
    store = Store(redis, ROUTING_PREFIX)
    tabs = {}
    for i in range(ACCEPTERS):
        agent_id = f"agent{i}"
        routing_team.add(agent_id, name=f"Agent {i}", queues=("manual",), max_chats=ROUNDS + 1)
        tabs[agent_id] = routing_team.connect(instances[i % 2], agent_id, available=True)

    wins: list[str] = []
    for round_ in range(ROUNDS):
        visitor = escalate(open_visitor, instances[round_ % 2], flow=flow_of("manual"))
        cid = cid_of(visitor)
        visitor.receive_until(waiting_at(1))

        for tab in tabs.values():  # all at once; then read the answers
            tab.send({"type": "accept", "conversation": cid})
        outcomes = {}
        for agent_id, tab in tabs.items():
            answer = tab.receive_until(lambda f, cid=cid: frame_like("error")(f) or
                                       assigned_frame(cid)(f))[-1]
            outcomes[agent_id] = answer["code"] if answer["type"] == "error" else "assigned"

        winners = [agent_id for agent_id, outcome in outcomes.items() if outcome == "assigned"]
        assert len(winners) == 1, (round_, outcomes)
        assert sorted(outcomes.values()) == ["assigned"] + ["conflict"] * (ACCEPTERS - 1), outcomes
        status = visitor.receive_until(frame_like("status", status="agent"))[-1]
        assert status["agent"]["name"] == f"Agent {winners[0][len('agent'):]}"
        assigned = [m for m in store.log(cid) if m.get("event") == "assigned"]
        assert len(assigned) == 1, assigned
        wins.append(winners[0])

    for agent_id, tab in tabs.items():  # nobody got one it did not win
        got = [f["conversation"]["id"] for f in tab.frames if f["type"] == "assigned"]
        assert len(got) == wins.count(agent_id), (agent_id, got, wins)


@pytest.mark.parametrize("attempt", range(2))
def test_twelve_visitors_escalating_at_once_never_overfill_three_agents(
        attempt, routing_team, routing_server, routing_second, open_visitor):
    instances = (routing_server, routing_second)
    agents = {}
    for i in range(3):
        routing_team.add(f"agent{i}", name=f"Agent {i}", max_chats=SLOTS)
        agents[f"agent{i}"] = routing_team.connect(instances[i % 2], f"agent{i}", available=True)
    visitors = [open_visitor(instances[i % 2]) for i in range(VISITORS)]
    for visitor in visitors:
        visitor.hello()

    start = threading.Barrier(VISITORS)
    outcome: dict[int, dict] = {}
    failures: list[BaseException] = []

    def escalate_now(index: int, visitor: VisitorSocket) -> None:
        try:
            start.wait(timeout=10)
            visitor.say(ASK)
            outcome[index] = visitor.receive_until(
                lambda f: frame_like("status", status="agent")(f) or queued_with_position(f))[-1]
        except BaseException as exc:  # noqa: BLE001 - reported by the test's thread
            failures.append(exc)

    threads = [threading.Thread(target=escalate_now, args=(i, v)) for i, v in enumerate(visitors)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not failures, failures
    assert len(outcome) == VISITORS

    taken = {cid_of(visitors[i]): s["agent"]["name"] for i, s in outcome.items()
             if s["status"] == "agent"}
    waiting = [visitors[i] for i, s in outcome.items() if s["status"] == "queued"]
    assert len(taken) == 3 * SLOTS and len(waiting) == VISITORS - 3 * SLOTS, outcome

    # Each agent is told of exactly its two, and of no third.
    held = {}
    for agent_id, tab in agents.items():
        got = []
        while len(got) < SLOTS:
            got.append(tab.receive_until(frame_like("assigned"))[-1]["conversation"]["id"])
        quiet_for(tab, QUIET_S, frame_like("assigned"))
        held[agent_id] = got
    every = [cid for got in held.values() for cid in got]
    assert sorted(every) == sorted(taken) and len(set(every)) == len(every)
    for agent_id, got in held.items():
        assert {taken[cid] for cid in got} == {f"Agent {agent_id[len('agent'):]}"}

    # A fresh socket of each agent shows the same two; a fresh hello of each waiting visitor
    # shows its place: 1 to 6, each once.
    for i, agent_id in enumerate(agents):
        fresh = routing_team.connect(instances[(i + 1) % 2], agent_id)
        assert sorted(c["id"] for c in fresh.welcome["conversations"]) == sorted(held[agent_id])
    positions = []
    for i, visitor in enumerate(waiting):
        again = open_visitor(instances[(i + 1) % 2])
        status = again.hello(visitor.greeting.token).status
        assert status["status"] == "queued" and status["queue"] == "support", status
        positions.append(status["position"])
    assert sorted(positions) == list(range(1, VISITORS - 3 * SLOTS + 1)), positions
