"""Routing in-process on the real Redis: who gets an escalated conversation, and when.

The parts are built as a worker builds them (tests/chat/conftest.py); agents are
seated on the board as their sockets would seat them. Each test escalates with the
shipped default flow ("I want to talk to a person" goes to queue `support`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from routing.settings import LEAST_BUSY, MANUAL, QueueBook, QueueSettings, parse
from tests.chat.conftest import seat, settle, started

# Not on_cluster: in-process parts on one Redis (tests/chat/conftest.py's `live`).

ASK = "I want to talk to a person"


def escalate(live, message_id: str = "v1") -> str:
    cid = started(live)
    live.visitors.say(cid, ASK, message_id)
    settle()
    return cid


def events(parts_store, cid: str) -> list[tuple[str, str]]:
    return [(m["event"], m["status"]) for m in parts_store.log(cid) if m["from"] == "system"]


def strategy(live, name: str, **options: Any) -> None:
    live.router.book = QueueBook({"support": QueueSettings("support", name, **options)})


def test_an_escalation_goes_at_once_to_the_available_agent(live, parts_store):
    seat(live, "ada")

    cid = escalate(live)

    assert events(parts_store, cid) == [("queued", "queued"), ("assigned", "agent")]
    assigned = parts_store.log(cid)[-1]
    assert assigned["agent"] == {"name": "Ada"}
    assert assigned["text"] == "Ada joined the conversation."
    record = parts_store.record(cid)
    assert record["status"] == "agent" and record["agent_id"] == "ada"
    assert record["queued_at"] and record["assigned_at"]
    assert live.board.holder(cid) == "ada" and live.board.seat_of("ada").load == 1


def test_nobody_available_sends_the_flow_to_no_agents(live, parts_store):
    seat(live, "ada", presence="away")

    cid = escalate(live)

    assert parts_store.record(cid)["status"] == "bot"
    assert parts_store.field(cid, "escalation")["outcome"] == "no_agents"
    assert live.board.holder(cid) is None


def test_a_busy_agent_counts_as_there_and_the_visitor_waits_until_a_slot_frees(live, parts_store):
    seat(live, "ada", max_chats=1)
    first = escalate(live, "v1")
    second = escalate(live, "v2")

    assert parts_store.record(second)["status"] == "queued"
    assert live.board.position(second, "support") == 1

    live.visitors.end(first)  # the visitor ends the first: ada's slot frees
    settle()

    assert live.board.holder(second) == "ada"
    assert parts_store.record(second)["status"] == "agent"
    assert live.board.seat_of("ada").load == 1


def test_longest_idle_gives_it_to_the_agent_whose_last_assignment_is_oldest(live):
    seat(live, "ada")
    seat(live, "bob")
    first = escalate(live, "v1")
    second = escalate(live, "v2")
    third = escalate(live, "v3")

    holders = [live.board.holder(cid) for cid in (first, second, third)]
    assert holders[0] != holders[1]  # the second goes to the one that had none
    assert holders[2] == holders[0]  # then the one idle longest again


def test_least_busy_gives_it_to_the_agent_with_fewest_open(live):
    strategy(live, LEAST_BUSY)
    seat(live, "ada")
    first = escalate(live, "v1")
    seat(live, "bob")  # comes later, idle longest would not matter: bob holds none
    second = escalate(live, "v2")

    assert live.board.holder(first) == "ada" and live.board.holder(second) == "bob"


def test_no_agent_ever_holds_more_than_max_chats(live):
    seat(live, "ada", max_chats=2)
    cids = [escalate(live, f"v{i}") for i in range(4)]

    assert sorted(live.board.held("ada")) == sorted(cids[:2])
    assert live.board.seat_of("ada").load == 2
    assert [live.board.position(cid, "support") for cid in cids[2:]] == [1, 2]


def test_an_agent_turning_available_takes_what_waits_at_once(live, parts_store):
    seat(live, "ada", max_chats=1)  # there, but full after the first
    escalate(live, "v1")
    cid = escalate(live, "v2")
    assert parts_store.record(cid)["status"] == "queued"
    bob = seat(live, "bob", presence="away")

    live.desk.set_presence(bob, "available")

    assert live.board.holder(cid) == "bob"
    assert parts_store.record(cid)["agent_name"] == "Bob"


def test_a_manual_queue_waits_for_an_accept_and_the_first_accept_wins(live, parts_store):
    strategy(live, MANUAL)
    ada, bob = seat(live, "ada"), seat(live, "bob")
    cid = escalate(live)
    assert live.board.holder(cid) is None

    live.desk.accept(ada, cid)

    assert live.board.holder(cid) == "ada"
    try:
        live.desk.accept(bob, cid)
    except Exception as exc:  # noqa: BLE001
        assert getattr(exc, "code", None) == "conflict"
    else:
        raise AssertionError("the second accept must get conflict")


def test_outside_opening_hours_the_flow_goes_on_at_no_agents(live, parts_store):
    book = parse("queues.yaml", {"support": {"hours": {"timezone": "Europe/Berlin",
                                                       "mon-fri": "09:00-17:00"}}})
    live.router.book = book
    seat(live, "ada")
    saturday_noon = datetime(2026, 12, 5, 11, 0, tzinfo=UTC).timestamp()
    live.router.clock = lambda: saturday_noon

    cid = escalate(live)

    assert parts_store.record(cid)["status"] == "bot"
    assert live.board.holder(cid) is None
    monday_ten = datetime(2026, 12, 7, 9, 0, tzinfo=UTC).timestamp()  # 10:00 in Berlin
    live.router.clock = lambda: monday_ten
    assert live.router.anybody_there({"queue": "support"})


def test_waiting_past_max_wait_goes_on_at_no_agents(live, parts_store):
    strategy(live, MANUAL, max_wait_s=1)
    seat(live, "ada")
    cid = escalate(live)
    entry_deadline = live.redis.zscore(live.board.base + "deadlines", cid)
    assert entry_deadline is not None

    live.redis.zadd(live.board.base + "deadlines", {cid: 0})  # as if the second had passed
    live.sweeps.sweep_once()
    settle()

    messages = parts_store.log(cid)
    back = [m for m in messages if m.get("event") == "to_bot"]
    assert back and back[-1]["reason"] == "max_wait"
    assert parts_store.record(cid)["status"] == "bot"
    assert live.board.position(cid, "support") is None


def test_leaving_the_queue_while_a_person_takes_it_is_refused(live, parts_store):
    from chat.visitors import NotQueued

    strategy(live, MANUAL)
    ada = seat(live, "ada")
    cid = escalate(live)
    live.desk.accept(ada, cid)

    try:
        live.visitors.leave_queue(cid)
    except NotQueued:
        pass
    else:
        raise AssertionError("a taken conversation cannot be left as a queue")
    assert parts_store.record(cid)["status"] == "agent"


def test_an_agent_gone_past_its_grace_gives_its_conversations_back_to_the_head_of_the_queue(
        live, parts_store):
    ada = seat(live, "ada", max_chats=1)
    held = escalate(live, "v1")
    waiting = escalate(live, "v2")
    assert live.board.position(waiting, "support") == 1
    seat(live, "bob", presence="away")  # keeps the queue staffed, takes nothing

    live.desk.disconnect(ada.id, f"socket-of-{ada.id}", grace_s=0)
    live.sweeps.sweep_once()
    settle()

    assert live.board.holder(held) is None
    assert live.board.position(held, "support") == 1  # ahead of the one that waited
    assert live.board.position(waiting, "support") == 2
    last = parts_store.log(held)[-1]
    assert last["event"] == "queued" and last["reason"] == "agent_lost"
    assert "Ada is no longer available" in last["text"]
    assert parts_store.record(held)["status"] == "queued"


def test_a_reconnect_within_grace_keeps_the_conversations(live):
    ada = seat(live, "ada")
    cid = escalate(live)
    live.desk.disconnect(ada.id, f"socket-of-{ada.id}", grace_s=60)
    assert not live.board.seat_of("ada").online

    seat(live, "ada")
    live.sweeps.sweep_once()

    assert live.board.holder(cid) == "ada"


def test_the_wait_estimate_follows_the_measured_rate_and_is_none_without_one(live):
    strategy(live, MANUAL)
    ada = seat(live, "ada", max_chats=10)
    cids = [escalate(live, f"v{i}") for i in range(3)]
    assert live.router.queue_status(cids[2], "support")["wait_s"] is None  # nobody taken yet

    live.desk.accept(ada, cids[0])
    live.desk.accept(ada, cids[1])

    status = live.router.queue_status(cids[2], "support")
    assert status["position"] == 1 and isinstance(status["wait_s"], int)


def test_a_conversation_back_from_a_lost_agent_is_told_so_before_the_next_agent_joins(
        live, parts_store):
    ada = seat(live, "ada", max_chats=1)
    cid = escalate(live)
    seat(live, "bob")  # available, with room: takes it as soon as it is back in line

    live.desk.disconnect(ada.id, f"socket-of-{ada.id}", grace_s=0)
    live.sweeps.sweep_once()
    settle()

    told = [(m["event"], m.get("reason"), m.get("agent")) for m in parts_store.log(cid)
            if m["from"] == "system"]
    assert told[-2:] == [("queued", "agent_lost", None), ("assigned", None, {"name": "Bob"})]
    assert live.board.holder(cid) == "bob"
    record = parts_store.record(cid)
    assert record["status"] == "agent" and record["agent_id"] == "bob"


def test_a_stale_tab_cannot_hand_on_or_close_what_it_passed_on(live, parts_store):
    from routing.desk import DeskError

    ada = seat(live, "ada")
    bob = seat(live, "bob")
    cid = escalate(live)
    holder, other = (ada, bob) if live.board.holder(cid) == "ada" else (bob, ada)
    live.desk.transfer(holder, cid, {"agent": other.id}, None)

    for late in (lambda: live.desk.transfer(holder, cid, {"bot": "menu"}, None),
                 lambda: live.desk.close(holder, cid, None)):
        try:
            late()
        except DeskError as exc:
            assert exc.code == "not_found"
        else:
            raise AssertionError("the former holder must not act on it")
    assert live.board.holder(cid) == other.id
    assert parts_store.record(cid)["status"] == "agent"


def test_a_transfer_to_an_unknown_agent_is_answered_as_one_to_an_away_agent(live):
    from routing.desk import DeskError

    ada = seat(live, "ada")
    seat(live, "bob", presence="away")
    cid = escalate(live)
    answers = []
    for target in ("bob", "nobody"):
        try:
            live.desk.transfer(ada, cid, {"agent": target}, None)
        except DeskError as exc:
            answers.append((exc.code, exc.message.replace(target, "X")))
    assert answers[0] == answers[1] and answers[0][0] == "conflict"  # ids cannot be probed
    assert live.board.holder(cid) == "ada"
