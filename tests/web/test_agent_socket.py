"""The agent socket /ws/agent over real WebSockets, real gunicorn (2 workers) and real Redis:
who may open it, what its welcome shows, one conversation between a visitor and an agent,
presence across tabs, history, and what an agent may see of others' conversations.

Agents are made in the test process (routing/agents.py) and connect with API tokens, or with
a console session (a login over HTTP) where the session is the point.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from datetime import datetime

import httpx
import pytest

from routing.board import BOARD
from tests.conftest import CONFIGURED_PREFIX, IDENTITY_SECRET, SHOP_ORIGIN
from tests.support.ws import (
    AgentSocket,
    about,
    bot_says,
    error_code,
    frame_like,
    handshake,
    message_from,
    quiet_for,
    refused_close,
    status_is,
    still_serves,
)
from tests.web.agent_fixtures import (
    CONNECTING,
    OFFLINE,
    PASSWORD,
    assigned_frame,
    cid_of,
    escalate,
    make_team_fixture,  # noqa: F401 - a fixture
    refused,
    team_fixture,  # noqa: F401 - a fixture
    with_agent,
)

pytestmark = pytest.mark.on_cluster  # also run on a Redis Cluster (make test)

POLICY = 1008
LOGOUT_S = 3.0  # "at once"
CSRF_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')
QUIET_S = 0.5  # how long "nothing more comes" is watched for, after an event that would carry it


def ada_holds_one(team, server, open_visitor, **agent):
    """Ada, available, and a visitor who escalated to her; return (her tab, the visitor)."""
    team.add("ada", name="Ada L.", **agent)
    ada = team.connect(server, "ada", available=True)
    visitor = escalate(open_visitor, server)
    with_agent(visitor, "Ada L.")
    return ada, visitor


# --- welcome -----------------------------------------------------------------------------------


def test_the_first_welcome_names_the_agent_away_with_nothing_held_or_waiting(team, server):
    team.add("ada", name="Ada L.", queues=("support", "billing"), max_chats=4)

    welcome = team.connect(server, "ada").welcome

    assert welcome == {"type": "welcome",
                       "agent": {"id": "ada", "name": "Ada L.", "queues": ["support", "billing"],
                                 "max_chats": 4, "role": "agent"},
                       "presence": "away", "conversations": [], "queue": []}


def test_a_later_connect_reports_the_presence_last_chosen(team, server):
    team.add("ada")
    first = team.connect(server, "ada", available=True)
    first.close()

    assert team.connect(server, "ada").welcome["presence"] == "available"


def test_a_bearer_header_opens_the_socket_as_the_query_token_does(team, server):
    token = team.add("ada")
    tab = AgentSocket(server, headers={"Authorization": f"Bearer {token}"})
    team.sockets.append(tab)

    assert tab.welcomed()["agent"]["id"] == "ada"


def test_a_held_conversation_is_in_the_welcome_with_transcript_vars_and_escalation(
        team, server, open_visitor):
    team.add("ada", name="Ada L.")
    team.connect(server, "ada", available=True)
    visitor = open_visitor(server)
    visitor.hello()
    visitor.talk("where is my order AB123457", until=bot_says("anything else"))
    visitor.say("I want to talk to a person")
    with_agent(visitor, "Ada L.")

    welcome = team.connect(server, "ada").welcome  # a second tab, or the console reloaded

    [held] = welcome["conversations"]
    assert held["id"] == cid_of(visitor)
    assert held["status"] == "agent"
    assert held["flow"] == "default"
    assert held["agent"] == {"id": "ada", "name": "Ada L."}
    assert held["vars"]["order_id"] == "AB123457"
    escalation = held["escalation"]
    assert escalation["queue"] == "support" and escalation["reason"] == "asked"
    assert escalation["path"][0] == "greet" and escalation["path"][-1] == "handoff"
    assert "lookup" in escalation["path"]
    transcript = held["transcript"]
    assert [m["seq"] for m in transcript] == list(range(1, len(transcript) + 1))
    said = [m["text"] for m in transcript if m["from"] == "visitor"]
    assert said == ["where is my order AB123457", "I want to talk to a person"]
    assert transcript[-1]["event"] == "assigned"
    assert held["past"] == []  # an unverified visitor links nothing


def test_past_lists_the_same_verified_visitors_other_conversations(
        make_team, configured_server, open_visitor):
    team = make_team(CONFIGURED_PREFIX)
    team.add("ada", name="Ada L.")
    team.connect(configured_server, "ada", available=True)
    identity = {"user_id": "u-42", "name": "Grace", "email": "grace@example.com",
                "hash": hmac.new(IDENTITY_SECRET.encode(), b"u-42", hashlib.sha256).hexdigest()}
    earlier = open_visitor(configured_server)
    earlier.hello(identity=identity)
    earlier.send({"type": "end"})
    earlier.receive_until(status_is("closed"))

    later = escalate(open_visitor, configured_server, identity=identity)
    with_agent(later, "Ada L.")

    [held] = team.connect(configured_server, "ada").welcome["conversations"]
    assert held["id"] == cid_of(later) and held["visitor"]["verified"] is True
    [past] = held["past"]
    assert past["id"] == cid_of(earlier)
    assert past["status"] == "closed" and past["closed_reason"] == "visitor"
    assert past["created"] and past["agent"] is None


# --- who may open it -------------------------------------------------------------------------


def test_without_a_credential_the_socket_is_closed_with_1008_saying_to_log_in(server):
    code, reason = refused_close(server, "/ws/agent")

    assert code == POLICY and "log in" in reason


def test_a_visitors_conversation_token_is_no_agent_credential(server, open_visitor):
    visitor = open_visitor(server)
    token = visitor.hello().token

    code, reason = refused_close(server, f"/ws/agent?token={token}")
    assert code == POLICY and "log in" in reason
    code, _ = refused_close(server, "/ws/agent", {"Authorization": f"Bearer {token}"})
    assert code == POLICY


def test_a_revoked_token_is_refused(team, server):
    token = team.add("ada")
    team.accounts.revoke_tokens("ada")

    code, reason = refused_close(server, f"/ws/agent?token={token}")

    assert code == POLICY and "log in" in reason


def test_another_sites_origin_gets_403_before_the_upgrade_even_when_allowed_for_visitors(
        make_team, configured_server):
    team = make_team(CONFIGURED_PREFIX)
    token = team.add("ada")
    port = configured_server.rsplit(":", 1)[1]

    from_shop = handshake(configured_server, f"/ws/agent?token={token}", {"Origin": SHOP_ORIGIN})
    assert from_shop.status == 403
    assert handshake(configured_server, "/ws/visitor", {"Origin": SHOP_ORIGIN}).status == 101
    for own in (f"http://127.0.0.1:{port}", f"http://localhost:{port}"):
        assert handshake(configured_server, f"/ws/agent?token={token}",
                         {"Origin": own}).status == 101
    tab = AgentSocket(configured_server, token, headers={"Origin": f"http://127.0.0.1:{port}"})
    team.sockets.append(tab)
    assert tab.welcomed()["agent"]["id"] == "ada"


class Console:
    """One browser logged in to the console (its cookie and CSRF tokens)."""

    def __init__(self, base_url: str, agent_id: str) -> None:
        self.http = httpx.Client(base_url=base_url, trust_env=False, timeout=10)
        answer = self.http.post("/login", data={"agent_id": agent_id, "password": PASSWORD,
                                                "csrf_token": self._token("/login")})
        assert answer.status_code == 302, answer.text

    def _token(self, path: str) -> str:
        return CSRF_TOKEN.search(self.http.get(path).text).group(1)

    @property
    def cookie(self) -> dict[str, str]:
        return {"Cookie": f"session={self.http.cookies['session']}"}

    def log_out(self) -> None:
        token = self._token("/console")
        assert self.http.post("/logout", data={"csrf_token": token}).status_code == 302


def test_a_console_session_opens_the_socket_and_its_logout_closes_it(team, server):
    team.add("ada")
    console = Console(server, "ada")
    tab = AgentSocket(server, headers=console.cookie)
    team.sockets.append(tab)
    assert tab.welcomed()["agent"]["id"] == "ada"
    cookie = console.cookie

    console.log_out()

    assert tab.wait_closed() == 1000 and tab.ws.close_message == "logged out"
    code, reason = refused_close(server, "/ws/agent", cookie)  # an ended session opens nothing
    assert code == POLICY and "log in" in reason
    console.http.close()


def test_a_logout_leaves_the_agents_other_browsers_and_tokens_open(team, server):
    team.add("ada")
    here, there = Console(server, "ada"), Console(server, "ada")  # two browsers
    tabs = [AgentSocket(server, headers=browser.cookie) for browser in (here, here, there)]
    team.sockets += tabs
    for tab in tabs:
        tab.welcomed()
    token_tab = team.connect(server, "ada")

    here.log_out()

    assert [tab.wait_closed(timeout=LOGOUT_S) for tab in tabs[:2]] == [1000, 1000]
    for tab in (tabs[2], token_tab):
        still_serves(tab)
    here.http.close()
    there.http.close()


# --- one conversation --------------------------------------------------------------------------


def test_an_escalation_reaches_the_available_agent_and_they_talk_both_ways(
        team, server, open_visitor, store):
    team.add("ada", name="Ada L.")
    ada = team.connect(server, "ada", available=True)
    visitor = escalate(open_visitor, server)
    cid = cid_of(visitor)

    got = visitor.receive_until(status_is("agent"))
    assert got[-1] == {"type": "status", "conversation": cid, "status": "agent",
                       "agent": {"name": "Ada L."}}
    joined = [f for f in got if f.get("from") == "system" and f.get("event") == "assigned"]
    assert len(joined) == 1 and joined[0]["agent"] == {"name": "Ada L."}
    assert joined[0]["text"] == "Ada L. joined the conversation."
    held = ada.assigned()
    assert held["id"] == cid and held["agent"] == {"id": "ada", "name": "Ada L."}
    assert held["escalation"]["reason"] == "asked"

    # the agent speaks: its ack comes before its echo; the visitor sees who wrote
    said = ada.say(cid, "Hello, Ada here. How can I help?")
    frames = ada.receive_until(frame_like("message", id=said))
    acks = [i for i, f in enumerate(frames) if f.get("type") == "ack" and f["id"] == said]
    assert acks and acks[0] < len(frames) - 1, frames  # the ack before the echo
    assert frames[acks[0]] == {"type": "ack", "id": said, "seq": frames[-1]["seq"],
                               "conversation": cid}  # an agent's frames name the conversation
    heard = visitor.receive_until(message_from("agent"))[-1]
    assert heard["text"] == "Hello, Ada here. How can I help?" and heard["name"] == "Ada L."
    assert heard["conversation"] == cid

    # the visitor speaks: the agent gets it, in seq order, and the bot stays silent
    visitor.say("opening hours")  # a bot keyword: the bot would answer it
    heard = ada.receive_until(message_from("visitor", "opening hours"))[-1]
    assert heard["conversation"] == cid

    # typing both ways, never echoed to the side that typed
    visitor.send({"type": "typing", "active": True})
    assert ada.receive_until(frame_like("typing"))[-1] == {
        "type": "typing", "conversation": cid, "from": "visitor", "active": True}
    ada.send({"type": "typing", "conversation": cid, "active": True})
    assert visitor.receive_until(frame_like("typing"))[-1] == {
        "type": "typing", "conversation": cid, "from": "agent", "active": True}

    # a repeated id is stored once: the same ack again, nothing else
    first_seq = frames[-1]["seq"]
    ada.say(cid, "Hello, Ada here. How can I help?", message_id=said)
    assert ada.receive_until(frame_like("ack", id=said))[-1]["seq"] == first_seq
    ada.say(cid, "Let me check.")
    visitor.receive_until(message_from("agent", "Let me check."))

    log = store.log(cid)
    assert [m["id"] for m in log].count(said) == 1
    assert not [f for f in visitor.frames if f.get("type") == "typing" and
                f.get("from") == "visitor"]
    assert not [f for f in ada.frames if f.get("type") == "typing" and f.get("from") == "agent"]
    after = next(m["seq"] for m in log if m.get("event") == "assigned")
    assert not [m for m in log if m["seq"] > after and m["from"] == "bot"], log
    assert not [f for f in visitor.frames if f.get("from") == "bot" and f["seq"] > after]


def test_the_record_keeps_the_times_reports_count_from(team, server, open_visitor, store):
    ada, visitor = ada_holds_one(team, server, open_visitor)
    cid = cid_of(visitor)
    ada.say(cid, "Hi!")
    visitor.receive_until(message_from("agent", "Hi!"))
    ada.say(cid, "Anything else?")
    visitor.receive_until(message_from("agent", "Anything else?"))
    ada.send({"type": "close", "conversation": cid, "tags": ["refund", "shipping delay"]})
    visitor.receive_until(status_is("closed"))

    record = store.record(cid)
    times = [record.get(name) for name in ("queued_at", "assigned_at", "first_agent_reply_at",
                                           "closed_at")]
    assert all(times), record
    parsed = [datetime.fromisoformat(t.replace("Z", "+00:00")) for t in times]
    assert parsed == sorted(parsed)
    first, second = [m["ts"] for m in store.log(cid) if m["from"] == "agent"]
    assert first <= record["first_agent_reply_at"] <= second  # the first reply's, kept
    assert store.field(cid, "tags") == ["refund", "shipping delay"]
    assert record["closed_reason"] == "agent"


# --- presence across tabs ----------------------------------------------------------------------


def test_presence_is_one_for_all_tabs_and_the_agent_is_online_while_any_tab_lives(
        team, server, open_visitor):
    team.add("ada", name="Ada L.")
    team.add("lena", name="Lena", queues=("billing",), role="lead")  # away: takes nothing
    lena = team.connect(server, "lena")
    tab_a, tab_b = team.connect(server, "ada"), team.connect(server, "ada")

    tab_a.presence("available")
    assert tab_b.receive_until(frame_like("presence"))[-1] == {"type": "presence",
                                                                "status": "available"}

    tab_a.close()
    first = escalate(open_visitor, server)
    with_agent(first, "Ada L.")
    assert tab_b.assigned()["id"] == cid_of(first)

    tab_b.close()
    lena.receive_until(lambda f: f.get("type") == "team" and any(
        a["id"] == "ada" and a["presence"] == "offline" for a in f["agents"]))
    second = escalate(open_visitor, server)
    got = second.receive_until(bot_says(OFFLINE))
    assert not [f for f in got if f.get("type") == "status" and f["status"] == "queued"]
    assert not [f for f in got if f.get("from") == "bot" and CONNECTING in f["text"]]


def test_a_presence_whose_ring_was_lost_reaches_the_tab_when_its_subscription_is_remade(
        team, server, redis):
    """A choice rung while a tab's subscription was not (yet, or no longer) there is shown at
    the tab's resync: the board is read, not only the doorbell."""
    team.add("ada")
    tab = team.connect(server, "ada")
    # the record changes with no ring at all, as when the ring came before the subscription
    redis.hset(BOARD.format(prefix="concierge:") + "seat:ada", "presence", "available")

    if hasattr(redis, "get_primaries"):  # a cluster: its sharded subscriptions, every master
        redis.client_kill_filter(_type="pubsub", target_nodes=redis.PRIMARIES)
    else:
        redis.client_kill_filter(_type="pubsub")

    assert tab.receive_until(frame_like("presence"))[-1] == {"type": "presence",
                                                             "status": "available"}


# --- history -----------------------------------------------------------------------------------


def test_history_pages_back_a_hundred_at_a_time_for_what_the_agent_holds_or_held(
        team, server, open_visitor):
    ada, visitor = ada_holds_one(team, server, open_visitor, max_chats=3)
    team.add("bob", name="Bob")
    bob = team.connect(server, "bob")
    cid = cid_of(visitor)
    second_tab = open_visitor(server)
    second_tab.hello(visitor.greeting.token)
    # 105 more messages, 35 from each of three sockets (each may send 40 at once)
    for tab, prefix in ((visitor, "v1-"), (second_tab, "v2-")):
        ids = [tab.say(f"line {prefix}{i}") for i in range(35)]
        tab.receive_until(frame_like("ack", id=ids[-1]))
    ids = [ada.say(cid, f"answer {i}") for i in range(35)]
    last = ada.receive_until(frame_like("message", id=ids[-1]))[-1]["seq"]
    assert last > 100

    ada.send({"type": "history", "conversation": cid, "before_seq": last + 1})
    page = ada.receive_until(frame_like("history"))[-1]
    assert page["conversation"] == cid
    assert [m["seq"] for m in page["messages"]] == list(range(last - 99, last + 1))
    ada.send({"type": "history", "conversation": cid, "before_seq": last - 99})
    rest = ada.receive_until(frame_like("history"))[-1]["messages"]
    assert [m["seq"] for m in rest] == list(range(1, last - 99))
    assert rest[0]["from"] == "bot"  # the greeting: the very start

    ada.send({"type": "close", "conversation": cid})
    ada.receive_until(frame_like("unassigned", conversation=cid))
    ada.send({"type": "history", "conversation": cid, "before_seq": 4})
    assert [m["seq"] for m in ada.receive_until(frame_like("history"))[-1]["messages"]] == [
        1, 2, 3]  # held: still hers to read

    bob.send({"type": "history", "conversation": cid, "before_seq": 4})
    refused(bob, "not_found")


# --- what an agent may see ---------------------------------------------------------------------


def test_another_agents_conversation_is_not_found_whatever_is_tried(team, server, open_visitor,
                                                                    store):
    ada, visitor = ada_holds_one(team, server, open_visitor)
    cid = cid_of(visitor)
    team.add("bob", name="Bob", queues=("billing",))
    bob = team.connect(server, "bob", available=True)

    probes = [
        {"type": "message", "conversation": cid, "id": "b1", "text": "hi, I'm Bob"},
        {"type": "typing", "conversation": cid, "active": True},
        {"type": "close", "conversation": cid},
        {"type": "transfer", "conversation": cid, "to": {"agent": "bob"}},
        {"type": "transfer", "conversation": cid, "to": {"bot": "menu"}},
        {"type": "history", "conversation": cid, "before_seq": 3},
        {"type": "accept", "conversation": cid},
        {"type": "follow_up", "conversation": cid},
    ]
    for probe in probes:
        bob.send(probe)
        answer = refused(bob, "not_found")
        assert answer.get("request") == probe["type"] and answer.get("conversation") == cid
        bob.send({**probe, "conversation": "c_doesnotexist"})
        other = refused(bob, "not_found")
        # exactly as for an id that does not exist: probing tells nothing
        assert {**answer, "message": answer["message"].replace(cid, "X"), "conversation": "X"} \
            == {**other, "message": other["message"].replace("c_doesnotexist", "X"),
                "conversation": "X"}, (probe, answer, other)

    # the conversation goes on between its two, and nothing of it reaches Bob
    visitor.say("still there?")
    ada.receive_until(message_from("visitor", "still there?"))
    ada.say(cid, "Yes!")
    visitor.receive_until(message_from("agent", "Yes!"))
    still_serves(bob)
    news = lambda f: f["type"] != "error" and about(cid)(f)  # noqa: E731 - errors answer probes
    quiet_for(bob, QUIET_S, news)
    assert not [f for f in bob.frames if news(f)]
    assert store.record(cid)["status"] == "agent" and store.record(cid)["agent_id"] == "ada"
    assert not [m for m in store.log(cid) if m.get("name") == "Bob" or m.get("id") == "b1"]
    assert not [f for f in visitor.frames if f.get("type") == "typing"]


def test_a_colleague_of_the_same_queue_may_not_read_a_conversation_someone_holds(
        team, server, open_visitor):
    _ada, visitor = ada_holds_one(team, server, open_visitor)
    cid = cid_of(visitor)
    team.add("carol", name="Carol")  # support, like Ada
    carol = team.connect(server, "carol", available=True)

    carol.send({"type": "accept", "conversation": cid})
    refused(carol, "conflict")  # it waited in her queue a moment ago: someone was quicker
    carol.send({"type": "history", "conversation": cid, "before_seq": 3})
    answer = carol.receive_until(lambda f: f.get("type") in ("error", "history"))[-1]
    assert answer["type"] == "error" and answer["code"] == "not_found", answer


def test_the_team_is_for_leads_who_see_agents_and_queues_and_may_pass_on_any_conversation(
        team, server, open_visitor):
    ada, visitor = ada_holds_one(team, server, open_visitor)
    cid = cid_of(visitor)
    team.add("bob", name="Bob")
    team.add("lena", name="Lena", queues=("billing",), role="lead")
    lena = team.connect(server, "lena")
    assert lena.receive()["type"] == "team"  # right after the welcome

    bob = team.connect(server, "bob", available=True)  # a change the lead is told of
    bob.send({"type": "team"})
    refused(bob, "forbidden")
    team_frame = lena.receive_until(lambda f: f["type"] == "team" and any(
        a["id"] == "bob" and a["presence"] == "available" for a in f["agents"]))[-1]
    agents = {a["id"]: a for a in team_frame["agents"]}
    assert agents["ada"] == {"id": "ada", "name": "Ada L.", "presence": "available", "open": 1,
                             "max_chats": 3}
    assert agents["bob"]["open"] == 0 and agents["lena"]["presence"] == "away"
    support = next(q for q in team_frame["queues"] if q["name"] == "support")
    assert support == {"name": "support", "waiting": 0, "longest_wait_s": 0, "open": True}
    lena.send({"type": "team"})
    assert lena.receive_until(frame_like("team"))[-1]["agents"]

    lena.send({"type": "transfer", "conversation": cid, "to": {"agent": "bob"},
               "note": "Bob knows this customer"})
    taken = bob.receive_until(assigned_frame(cid))[-1]["conversation"]
    assert taken["escalation"]["reason"] == "transfer"
    assert taken["escalation"]["note"] == "Bob knows this customer"
    ada.receive_until(frame_like("unassigned", conversation=cid, reason="transferred"))
    with_agent(visitor, "Bob")


def test_a_bad_agent_frame_gets_an_error_and_the_socket_stays(team, server):
    team.add("ada")
    ada = team.connect(server, "ada")

    ada.send({"type": "presence", "status": "busy"})
    refused(ada, "bad_frame")
    ada.send({"type": "transfer", "conversation": "c_x", "to": {"agent": "a", "queue": "b"}})
    refused(ada, "bad_frame")
    ada.send({"type": "hello"})
    assert ada.receive_until(error_code("unknown_type"))
    still_serves(ada)


def ada_is(presence: str):
    """Match a lead's `team` frame showing Ada with `presence`."""
    return lambda f: f.get("type") == "team" and any(
        a["id"] == "ada" and a["presence"] == presence for a in f["agents"])


TEAM_VIEW_S = 1.0  # a lead's team view is sent on change, at most once a second


def test_a_leads_team_view_always_catches_up_with_the_last_change(team, server):
    team.add("ada", name="Ada L.")
    team.add("lena", name="Lena", queues=("billing",), role="lead")
    lena = team.connect(server, "lena")
    ada = team.connect(server, "ada")
    lena.receive_until(ada_is("away"))
    time.sleep(TEAM_VIEW_S + 0.2)  # no view of the team made for a while (nothing to await)

    ada.presence("available")
    lena.send({"type": "team"})  # the lead asks while the change's own frame is due
    lena.receive_until(ada_is("available"))  # (views sent before may still be on their way)
    ada.presence("away")  # changed again, within the second

    # the next view sent (at most a second on) is made after the change, so it shows it
    assert ada_is("away")(lena.receive_until(frame_like("team"), 2 * TEAM_VIEW_S + 2)[-1])


def test_a_transcript_too_long_for_one_frame_comes_as_its_last_part_and_pages_back(
        team, server, open_visitor, redis, store):
    """A visitor who wrote ~3 MB before asking for a person (the cap allows ~16 MB) must not
    make the conversation impossible to hand over: a frame that size alone is more than a socket
    may leave unread, and the agent who got it was cut off at each connect, then the next one."""
    from tests.web.test_feeds import LONG_TEXT, bot_message, ring  # noqa: PLC0415

    team.add("ada", name="Ada L.")
    ada = team.connect(server, "ada", available=True)
    visitor = open_visitor(server)
    visitor.hello()
    cid = cid_of(visitor)
    long = [{**bot_message(LONG_TEXT, n), "from": "visitor"} for n in range(190)]  # ~3 MB
    ring(redis, store, cid, *long, rung=False)
    visitor.say("I want to talk to a person")
    with_agent(visitor, "Ada L.")

    held = ada.receive_until(assigned_frame(cid))[-1]["conversation"]
    sizes = [len(json.dumps(m, ensure_ascii=False).encode()) for m in held["transcript"]]
    assert sum(sizes) <= 256 * 1024 and held["earlier"] is True
    seqs = [m["seq"] for m in held["transcript"]]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))) and seqs[0] > 1
    assert held["transcript"][-1]["event"] == "assigned"  # the last messages: up to now
    earliest, pages = seqs[0], 0
    while earliest > 1:  # the rest a page at a time, each within the same bound
        ada.send({"type": "history", "conversation": cid, "before_seq": earliest})
        page = ada.receive_until(frame_like("history"))[-1]["messages"]
        assert page and page[-1]["seq"] == earliest - 1
        assert sum(len(json.dumps(m, ensure_ascii=False).encode()) for m in page) <= 256 * 1024
        earliest, pages = page[0]["seq"], pages + 1
    assert pages >= 10  # ~3 MB in parts of at most 256 KB

    again = team.connect(server, "ada").welcome  # a reload: the welcome carries it in part too
    [shown] = again["conversations"]
    assert shown["earlier"] is True and shown["transcript"][-1]["seq"] == seqs[-1]
    ada.send({"type": "ping"})
    assert ada.receive_until(frame_like("pong"))  # never cut off
