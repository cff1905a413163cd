"""An agent whose socket dies without a close: offline at once, its conversations kept for the
grace, then back to the head of the queue for someone else. Over real sockets on a server that
pings agents every second and gives 2 s of grace (AGENT_PING_S=1, AGENT_GRACE_S=2); the agent's
socket goes through a TCP proxy that the test freezes (a network gone silent: no pong comes
back) or cuts (the connection ends, never a close frame).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.ws import AgentSocket, TcpProxy, message_from, quiet_for
from tests.web.agent_fixtures import (
    assigned_frame,
    cid_of,
    escalate,
    grace_server_fixture,  # noqa: F401 - a fixture
    grace_team_fixture,  # noqa: F401 - a fixture
    waiting_at,
    with_agent,
)

pytestmark = pytest.mark.on_cluster  # also run on a Redis Cluster (make test)

GRACE_S = 2.0
TRY_LATER = 1013
POLICY = 1008
GONE_S = 15.0  # a dead socket is noticed within two pings, and the grace runs 2 s more


@pytest.fixture
def proxy(grace_server) -> Iterator[TcpProxy]:
    made = TcpProxy(grace_server)
    yield made
    made.close()


def offline(agent_id: str):
    """Match a lead's `team` frame showing `agent_id` offline."""
    return lambda f: f.get("type") == "team" and any(
        a["id"] == agent_id and a["presence"] == "offline" for a in f["agents"])


def agent_lost(frame) -> bool:
    return frame.get("type") == "message" and frame.get("from") == "system" and \
        frame.get("event") == "queued" and frame.get("reason") == "agent_lost"


def through(proxy: TcpProxy, grace_team, agent_id: str) -> AgentSocket:
    """Open the agent's socket through the proxy, available."""
    tab = AgentSocket(proxy.url, grace_team.tokens[agent_id])
    grace_team.sockets.append(tab)
    tab.welcomed()
    tab.presence("available")
    return tab


def a_lead_and_ada_holding_one(grace_team, grace_server, proxy, open_visitor):
    grace_team.add("ada", name="Ada L.")
    grace_team.add("bob", name="Bob")
    grace_team.add("lena", name="Lena", queues=("billing",), role="lead")  # away: sees the team
    ada = through(proxy, grace_team, "ada")
    lena = grace_team.connect(grace_server, "lena")
    visitor = escalate(open_visitor, grace_server)
    with_agent(visitor, "Ada L.")
    ada.receive_until(assigned_frame(cid_of(visitor)))
    return ada, lena, visitor


@pytest.mark.parametrize("death", ["freeze", "cut"])
def test_a_dead_agent_socket_goes_offline_and_after_the_grace_another_agent_gets_it(
        death, grace_team, grace_server, proxy, open_visitor):
    ada, lena, visitor = a_lead_and_ada_holding_one(grace_team, grace_server, proxy,
                                                    open_visitor)
    bob = grace_team.connect(grace_server, "bob")  # away until Ada is gone

    getattr(proxy, death)()
    lena.receive_until(offline("ada"), GONE_S)
    bob.presence("available")

    newcomer = escalate(open_visitor, grace_server)  # Ada is offline: it goes to Bob
    with_agent(newcomer, "Bob")
    lost = visitor.receive_until(agent_lost, GONE_S)[-1]
    assert lost["status"] == "queued" and lost["queue"] == "support"
    assert lost["text"] == "Ada L. is no longer available; you are back at the front of the queue."
    status = visitor.receive_until(lambda f: f.get("type") == "status")[-1]
    assert status["status"] == "queued" and status["reason"] == "agent_lost"
    bob.receive_until(assigned_frame(cid_of(visitor)))
    with_agent(visitor, "Bob")
    if death == "freeze":  # the server gave up on the silent socket with 1013
        proxy.thaw()
        assert ada.wait_closed() == TRY_LATER


def test_what_a_lost_agent_held_goes_back_ahead_of_those_already_waiting(
        grace_team, grace_server, proxy, open_visitor):
    grace_team.add("ada", name="Ada L.", max_chats=1)
    grace_team.add("bob", name="Bob", max_chats=1)
    ada = through(proxy, grace_team, "ada")
    bob = grace_team.connect(grace_server, "bob")
    held = escalate(open_visitor, grace_server)
    with_agent(held, "Ada L.")
    bob.presence("available")
    with_agent(escalate(open_visitor, grace_server), "Bob")
    waiting = escalate(open_visitor, grace_server)  # both are full: it waits, first in line
    waiting.receive_until(waiting_at(1))
    ada.receive_until(assigned_frame(cid_of(held)))

    proxy.cut()

    held.receive_until(agent_lost, GONE_S)
    held.receive_until(waiting_at(1))  # at the head, ahead of the one that waited
    waiting.receive_until(waiting_at(2), GONE_S)


def test_reconnecting_within_the_grace_keeps_the_conversations(grace_team, grace_server, proxy,
                                                               open_visitor):
    ada, lena, visitor = a_lead_and_ada_holding_one(grace_team, grace_server, proxy,
                                                    open_visitor)
    cid = cid_of(visitor)

    proxy.cut()
    lena.receive_until(offline("ada"), GONE_S)
    back = grace_team.connect(grace_server, "ada")

    assert [held["id"] for held in back.welcome["conversations"]] == [cid]
    assert back.welcome["presence"] == "available"
    quiet_for(visitor, GRACE_S + 1.5, agent_lost)  # past the grace and a sweep: still hers
    visitor.say("are you still there?")
    back.receive_until(message_from("visitor", "are you still there?"))
    back.say(cid, "Yes, sorry: my connection dropped.")
    visitor.receive_until(message_from("agent", "my connection dropped"))


def test_a_token_revoked_while_its_socket_is_open_closes_it_within_a_ping(grace_team,
                                                                         grace_server):
    grace_team.add("ada")
    ada = grace_team.connect(grace_server, "ada")

    grace_team.accounts.revoke_tokens("ada")

    assert ada.wait_closed(timeout=5.0) == POLICY
