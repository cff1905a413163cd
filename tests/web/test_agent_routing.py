"""Routing as agents and visitors see it over their sockets (real gunicorn, 2 workers, real
Redis): every strategy, max_chats and the waiting line, every way to no_agents and the missed
list, and the three kinds of transfer.

tests/routing/test_assignment.py proves the same rules in-process; here each is what a person
at either end would notice: frames on the sockets.
"""

from __future__ import annotations

import pytest

from tests.support.ws import (
    bot_says,
    frame_like,
    message_from,
    status_is,
)
from tests.web.agent_fixtures import (
    ASK,
    ASK_EMAIL,
    CONNECTING,
    LEAVE_MESSAGE,
    OFFLINE,
    assigned_frame,
    cid_of,
    escalate,
    flow_of,
    line_up,
    listing,
    missed_of,
    refused,
    routing_files_fixture,  # noqa: F401 - a fixture
    routing_server_fixture,  # noqa: F401 - a fixture
    routing_team_fixture,  # noqa: F401 - a fixture
    team_fixture,  # noqa: F401 - a fixture
    waiting_at,
    with_agent,
)

pytestmark = pytest.mark.on_cluster  # also run on a Redis Cluster (make test)

LINE_CATCH_UP_S = 2.0  # `queue` frames follow a change within 0.25 s; far more than that
SWEEP_WAIT_S = 10.0  # the sweeps run every second; this leaves room on a loaded machine


def system(event: str, **fields):
    return lambda f: f.get("type") == "message" and f.get("from") == "system" and \
        f.get("event") == event and all(f.get(k) == v for k, v in fields.items())


def no_status(frames, value: str) -> bool:
    return not [f for f in frames if f.get("type") == "status" and f["status"] == value]


# --- strategies --------------------------------------------------------------------------------


def two_then_a_third(team, url, open_visitor, queue: str, flow: str | None):
    """Ada takes two alone, then Bob turns available and takes the third: Ada holds 2 and was
    assigned before Bob. Return the visitor of a fourth escalation."""
    for agent_id in ("ada", "bob"):
        team.add(agent_id, queues=(queue,))
    ada = team.connect(url, "ada", available=True)
    bob = team.connect(url, "bob")
    for _ in range(2):
        with_agent(escalate(open_visitor, url, flow=flow), "Ada")
    bob.presence("available")
    third = escalate(open_visitor, url, flow=flow)
    with_agent(third, "Bob")
    assert bob.assigned()["id"] == cid_of(third)
    return ada, bob, escalate(open_visitor, url, flow=flow)


def test_longest_idle_gives_it_to_the_agent_whose_last_assignment_is_oldest(
        routing_team, routing_server, open_visitor):
    ada, _bob, fourth = two_then_a_third(routing_team, routing_server, open_visitor, "support",
                                         None)

    with_agent(fourth, "Ada")  # busier (2 against 1), but idle longer
    ada.receive_until(assigned_frame(cid_of(fourth)))


def test_least_busy_gives_it_to_the_agent_with_fewest_open(routing_team, routing_server,
                                                           open_visitor):
    _ada, bob, fourth = two_then_a_third(routing_team, routing_server, open_visitor, "least",
                                         flow_of("least"))

    with_agent(fourth, "Bob")  # 1 open against Ada's 2, though assigned more lately
    bob.receive_until(assigned_frame(cid_of(fourth)))


def test_a_manual_queue_is_offered_to_every_agent_of_it_and_the_first_accept_wins(
        routing_team, routing_server, open_visitor):
    for agent_id in ("ada", "bob", "carol", "dave"):
        routing_team.add(agent_id, queues=("manual",))
    ada = routing_team.connect(routing_server, "ada", available=True)
    bob = routing_team.connect(routing_server, "bob", available=True)
    carol = routing_team.connect(routing_server, "carol")  # away

    visitor = escalate(open_visitor, routing_server, flow=flow_of("manual"))
    cid = cid_of(visitor)
    visitor.receive_until(waiting_at(1))
    for tab in (ada, bob, carol):
        offered = tab.receive_until(listing(cid))[-1]["waiting"]
        [item] = [i for i in offered if i["conversation"] == cid]
        assert item["queue"] == "manual" and item["manual"] is True
        assert item["preview"] == ASK and item["reason"] == "asked"
        assert item["priority"] == 0 and item["waited_s"] >= 0
    assert not [f for t in (ada, bob, carol) for f in t.frames if f["type"] == "assigned"]
    later = routing_team.connect(routing_server, "dave")  # connects while it waits
    assert [i["conversation"] for i in later.welcome["queue"]] == [cid]
    carol.send({"type": "history", "conversation": cid, "before_seq": 3})  # hers to take: readable
    assert len(carol.receive_until(frame_like("history"))[-1]["messages"]) == 2

    said = visitor.say("my parcel is late")  # while waiting: kept for the person, not the bot
    visitor.receive_until(frame_like("message", id=said))

    carol.send({"type": "accept", "conversation": cid})
    refused(carol, "conflict")  # away: set yourself available first
    ada.send({"type": "accept", "conversation": cid})
    taken = ada.assigned()
    assert taken["id"] == cid and taken["escalation"]["queue"] == "manual"
    assert taken["transcript"][-2]["text"] == "my parcel is late"
    assert not [f for f in visitor.frames if f.get("from") == "bot" and
                f["seq"] > taken["transcript"][-2]["seq"]]
    bob.send({"type": "accept", "conversation": cid})
    refused(bob, "conflict")
    with_agent(visitor, "Ada")
    assert not [f for f in bob.frames if f["type"] == "assigned"]


def test_a_lead_may_accept_from_any_queue(routing_team, routing_server, open_visitor):
    routing_team.add("ada", queues=("manual",))  # keeps the queue staffed
    routing_team.add("lena", name="Lena", queues=("billing",), role="lead")
    routing_team.connect(routing_server, "ada", available=True)
    lena = routing_team.connect(routing_server, "lena", available=True)
    visitor = escalate(open_visitor, routing_server, flow=flow_of("manual"))
    cid = cid_of(visitor)
    lena.receive_until(listing(cid))  # a lead sees every queue's line

    lena.send({"type": "accept", "conversation": cid})

    answer = lena.receive_until(lambda f: f["type"] in ("error", "assigned"))[-1]
    assert answer["type"] == "assigned" and answer["conversation"]["id"] == cid, answer
    with_agent(visitor, "Lena")


def test_an_accept_past_max_chats_is_a_conflict(routing_team, routing_server, open_visitor):
    routing_team.add("ada", queues=("manual",), max_chats=1)
    ada = routing_team.connect(routing_server, "ada", available=True)
    first, second = line_up(open_visitor, routing_server, 2, flow=flow_of("manual"))

    ada.send({"type": "accept", "conversation": cid_of(first)})
    ada.receive_until(assigned_frame(cid_of(first)))
    ada.send({"type": "accept", "conversation": cid_of(second)})
    refused(ada, "conflict")
    second.receive_until(waiting_at(1))


def test_an_agent_at_max_chats_takes_nothing_more_and_the_next_waits_until_a_close(
        team, server, open_visitor, store):
    team.add("ada", name="Ada L.", max_chats=1)
    team.add("lena", name="Lena", queues=("billing",), role="lead")  # sees every queue
    ada = team.connect(server, "ada", available=True)
    lena = team.connect(server, "lena")
    first = escalate(open_visitor, server)
    with_agent(first, "Ada L.")
    ada.receive_until(assigned_frame(cid_of(first)))

    second = escalate(open_visitor, server)
    status = second.receive_until(waiting_at(1))[-1]
    assert status["queue"] == "support" and status["wait_s"] is None
    ada.receive_until(listing(cid_of(second)))
    lena.receive_until(listing(cid_of(second)))

    ada.send({"type": "close", "conversation": cid_of(first), "tags": ["refund"]})
    ada.receive_until(frame_like("unassigned", conversation=cid_of(first), reason="closed"))
    ada.receive_until(assigned_frame(cid_of(second)))
    closed = first.receive_until(status_is("closed"))[-1]
    assert closed["reason"] == "agent"
    with_agent(second, "Ada L.")
    assert store.field(cid_of(first), "tags") == ["refund"]


def test_a_visitor_ending_it_frees_the_agents_slot_for_the_next(team, server, open_visitor):
    team.add("ada", name="Ada L.", max_chats=1)
    ada = team.connect(server, "ada", available=True)
    first = escalate(open_visitor, server)
    with_agent(first, "Ada L.")
    second = escalate(open_visitor, server)
    second.receive_until(waiting_at(1))

    first.send({"type": "end"})

    closed = ada.receive_until(frame_like("status", conversation=cid_of(first),
                                          status="closed"))[-1]
    assert closed["reason"] == "visitor"
    ada.receive_until(frame_like("unassigned", conversation=cid_of(first), reason="closed"))
    ada.receive_until(assigned_frame(cid_of(second)))
    with_agent(second, "Ada L.")


def test_waiting_visitors_hear_their_place_in_line_and_when_it_moves(team, server,
                                                                     open_visitor):
    team.add("ada", name="Ada L.", max_chats=1)
    ada = team.connect(server, "ada", available=True)
    held = escalate(open_visitor, server)
    with_agent(held, "Ada L.")

    waiting = []
    for position in range(1, 4):  # each in line before the next asks (see line_up)
        waiting.append(escalate(open_visitor, server))
        status = waiting[-1].receive_until(waiting_at(position))[-1]
        assert status["wait_s"] is None  # one taken in the last half hour: no basis yet

    ada.send({"type": "close", "conversation": cid_of(held)})
    with_agent(waiting[0], "Ada L.")
    for position, visitor in enumerate(waiting[1:], start=1):
        status = visitor.receive_until(waiting_at(position), SWEEP_WAIT_S)[-1]
        assert isinstance(status["wait_s"], int)  # two taken now: an estimate
    again = open_visitor(server)  # the status after a hello carries the place too
    assert again.hello(waiting[2].greeting.token).status["position"] == 2


def line_of(cids):
    """Match a `queue` frame listing exactly `cids`, in this order."""
    wanted = list(cids)
    return lambda f: f.get("type") == "queue" and [i["conversation"] for i in f["waiting"]] == \
        wanted


def test_an_agents_waiting_list_follows_every_change(routing_team, routing_server, open_visitor):
    for queue, flow in (("support", None), ("least", flow_of("least"))):
        routing_team.add(f"ada-{queue}", name="Ada L.", queues=(queue,), max_chats=1)
        ada = routing_team.connect(routing_server, f"ada-{queue}", available=True)
        held = escalate(open_visitor, routing_server, flow=flow)
        with_agent(held, "Ada L.")
        waiting = line_up(open_visitor, routing_server, 3, flow=flow)
        ada.receive_until(line_of(cid_of(v) for v in waiting), LINE_CATCH_UP_S)

        ada.send({"type": "close", "conversation": cid_of(held)})
        with_agent(waiting[0], "Ada L.")

        ada.receive_until(line_of(cid_of(v) for v in waiting[1:]), LINE_CATCH_UP_S)


# --- no_agents, at each of its causes, and the missed list ------------------------------------


def offline_without_queueing(visitor) -> None:
    """The escalation found nobody: the flow's offline text, never queued nor 'connecting'."""
    got = visitor.receive_until(bot_says(ASK_EMAIL))
    assert any(bot_says(OFFLINE)(f) for f in got)
    assert no_status(got, "queued") and not [f for f in got if bot_says(CONNECTING)(f)]
    assert not [f for f in got if f.get("event") == "queued"]


def test_nobody_available_at_escalation_goes_to_no_agents_and_is_missed(team, server,
                                                                        open_visitor):
    team.add("ada", name="Ada L.")
    ada = team.connect(server, "ada")  # away

    visitor = escalate(open_visitor, server)
    offline_without_queueing(visitor)

    missed = missed_of(ada, cid_of(visitor))
    assert missed["why"] == "no_agents" and missed["queue"] == "support"
    assert missed["status"] == "bot" and missed["followed_up"] is None and missed["at"]
    ada.send({"type": "follow_up", "conversation": cid_of(visitor)})
    answer = ada.receive_until(frame_like("missed"))[-1]["conversations"]
    [marked] = [item for item in answer if item["conversation"] == cid_of(visitor)]
    assert marked["followed_up"]["id"] == "ada" and marked["followed_up"]["name"] == "Ada L."
    assert marked["followed_up"]["at"]

    ada.send({"type": "history", "conversation": cid_of(visitor), "before_seq": 3})  # missed in
    assert len(ada.receive_until(frame_like("history"))[-1]["messages"]) == 2  # her queue
    later = escalate(open_visitor, server)
    later.receive_until(bot_says(ASK_EMAIL))
    missed_of(ada, cid_of(later))
    listed = [i["conversation"] for i in ada.frames[-1]["conversations"]]
    assert listed.index(cid_of(later)) < listed.index(cid_of(visitor))  # newest first


def test_outside_opening_hours_an_escalation_goes_to_no_agents_and_is_missed(
        routing_team, routing_server, open_visitor):
    routing_team.add("hal", queues=("closed",))
    hal = routing_team.connect(routing_server, "hal", available=True)  # there; the queue is shut

    visitor = escalate(open_visitor, routing_server, flow=flow_of("closed"))
    offline_without_queueing(visitor)

    assert missed_of(hal, cid_of(visitor))["why"] == "closed_hours"
    assert not [f for f in hal.frames if f["type"] == "assigned"]


def test_waiting_past_max_wait_goes_back_to_the_bot_and_is_missed(routing_team, routing_server,
                                                                  open_visitor):
    routing_team.add("ada", queues=("brief",))  # manual, max_wait 1 s: nobody accepts in time
    ada = routing_team.connect(routing_server, "ada", available=True)

    visitor = escalate(open_visitor, routing_server, flow=flow_of("brief"))
    visitor.receive_until(waiting_at(1))
    back = visitor.receive_until(system("to_bot", reason="max_wait"), SWEEP_WAIT_S)[-1]
    assert back["status"] == "bot"
    visitor.receive_until(status_is("bot"))
    visitor.receive_until(bot_says(OFFLINE))

    assert missed_of(ada, cid_of(visitor))["why"] == "max_wait"


def test_leaving_the_queue_goes_back_to_the_bot_and_is_missed(routing_team, routing_server,
                                                              open_visitor):
    routing_team.add("ada", queues=("manual",))
    ada = routing_team.connect(routing_server, "ada", available=True)
    visitor = escalate(open_visitor, routing_server, flow=flow_of("manual"))
    visitor.receive_until(waiting_at(1))

    visitor.send({"type": "leave_queue"})
    visitor.receive_until(system("to_bot", reason="left_queue"))
    visitor.receive_until(bot_says(LEAVE_MESSAGE))  # not "nobody is available"
    visitor.send({"type": "leave_queue"})
    error = visitor.receive_until(frame_like("error"))[-1]
    assert error["code"] == "conflict"  # not waiting any more

    assert missed_of(ada, cid_of(visitor))["why"] == "left_queue"


def test_ending_while_waiting_is_missed_too(routing_team, routing_server, open_visitor):
    routing_team.add("ada", queues=("manual",))
    ada = routing_team.connect(routing_server, "ada", available=True)
    visitor = escalate(open_visitor, routing_server, flow=flow_of("manual"))
    visitor.receive_until(waiting_at(1))

    visitor.send({"type": "end"})
    visitor.receive_until(status_is("closed"))

    missed = missed_of(ada, cid_of(visitor))
    assert missed["why"] == "ended_waiting" and missed["status"] == "closed"


# --- transfer ----------------------------------------------------------------------------------


def test_transfer_to_a_full_agent_or_a_shut_queue_is_a_conflict(routing_team, routing_server,
                                                                 open_visitor):
    routing_team.add("ada", name="Ada", queues=("support", "closed"))
    routing_team.add("bob", name="Bob", max_chats=1)
    routing_team.add("hal", queues=("closed",))
    ada = routing_team.connect(routing_server, "ada", available=True)
    routing_team.connect(routing_server, "hal", available=True)  # there, but "closed" is shut
    visitor = escalate(open_visitor, routing_server)
    with_agent(visitor, "Ada")
    bob = routing_team.connect(routing_server, "bob", available=True)
    with_agent(escalate(open_visitor, routing_server), "Bob")  # bob is full now
    cid = cid_of(visitor)

    ada.send({"type": "transfer", "conversation": cid, "to": {"agent": "bob"}})
    refused(ada, "conflict")
    ada.send({"type": "transfer", "conversation": cid, "to": {"queue": "closed"}})
    refused(ada, "conflict")
    bob.send({"type": "ping"})
    bob.receive_until(frame_like("pong"))
    assert not [f for f in bob.frames if assigned_frame(cid)(f)]
    ada.say(cid, "Still me.")
    visitor.receive_until(message_from("agent", "Still me."))


def test_transfer_to_an_agent_a_queue_and_the_bot(team, server, open_visitor, store):
    note = "VIP customer: wants a refund for order AB123457"
    team.add("ada", name="Ada L.")
    team.add("bob", name="Bob")
    team.add("carol", name="Carol")
    team.add("dan", name="Dan", queues=("billing",))
    ada = team.connect(server, "ada", available=True)
    bob = team.connect(server, "bob")
    team.connect(server, "carol")  # away
    dan = team.connect(server, "dan", available=True)
    visitor = escalate(open_visitor, server)
    cid = cid_of(visitor)
    with_agent(visitor, "Ada L.")
    bob.presence("available")

    # to an agent who is away, or to a queue nobody serves now: refused
    ada.send({"type": "transfer", "conversation": cid, "to": {"agent": "carol"}})
    refused(ada, "conflict")
    ada.send({"type": "transfer", "conversation": cid, "to": {"queue": "nobody-here"}})
    refused(ada, "conflict")

    # to an available agent, with a note for them only
    ada.send({"type": "transfer", "conversation": cid, "to": {"agent": "bob"}, "note": note})
    taken = bob.receive_until(assigned_frame(cid))[-1]["conversation"]
    assert taken["escalation"]["reason"] == "transfer" and taken["escalation"]["note"] == note
    assert taken["agent"] == {"id": "bob", "name": "Bob"}
    ada.receive_until(frame_like("unassigned", conversation=cid, reason="transferred"))
    passed = visitor.receive_until(system("transferred", status="agent"))[-1]
    assert passed["agent"] == {"name": "Bob"}
    with_agent(visitor, "Bob")

    # to a queue: back in line there, and an agent of it takes it
    bob.send({"type": "transfer", "conversation": cid, "to": {"queue": "billing"}})
    requeued = visitor.receive_until(status_is("queued"))[-1]
    assert requeued["queue"] == "billing"
    assert any(system("transferred", status="queued", reason="transferred")(f)
               for f in visitor.frames)
    bob.receive_until(frame_like("unassigned", conversation=cid, reason="transferred"))
    moved = dan.receive_until(assigned_frame(cid))[-1]["conversation"]
    assert moved["escalation"]["queue"] == "billing"
    with_agent(visitor, "Dan")

    # to the bot: a state that does not exist, then one that does
    dan.send({"type": "transfer", "conversation": cid, "to": {"bot": "nowhere"}})
    refused(dan, "not_found")
    dan.send({"type": "transfer", "conversation": cid, "to": {"bot": "shipping"}})
    dan.receive_until(frame_like("unassigned", conversation=cid, reason="transferred"))
    back = visitor.receive_until(bot_says("We ship within 1-2 working days"))
    assert any(system("to_bot", reason="agent")(f) for f in back)
    assert any(f.get("type") == "status" and f["status"] == "bot" for f in back)
    visitor.talk("opening hours", until=bot_says("Our team answers chats"))

    assert not [f for f in visitor.frames if note in str(f)]  # the note is never the visitor's
    assert store.record(cid)["status"] == "bot"
    assert not [f for f in visitor.frames if message_from("agent")(f)]
