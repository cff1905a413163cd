"""Status changes: each stored with its system message in one fenced step, then what follows.

The parts run in-process on the suite's real Redis, built as a worker builds them
(tests/chat/conftest.py). Where a test needs a person to be there it seats an agent on
the board, or answers routing's questions itself; routing proper is tests/routing/.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from chat import lifecycle
from chat.conversations import Closed
from chat.turns import LOCK_RETRIES, Reason
from tests.chat.conftest import manual, seat, settle
from tests.chat.conftest import started as start

ADA = {"verified": True, "user_id": "u-ada", "name": "Ada"}


def say(live, cid: str, text: str, message_id: str, payload: str | None = None) -> None:
    live.visitors.say(cid, text, message_id, payload=payload)
    settle()


def log(parts_store, cid: str) -> list[dict[str, Any]]:
    return parts_store.log(cid)


def system(messages: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(m["event"], m["status"]) for m in messages if m["from"] == "system"]


def test_the_visitors_end_stores_one_closed_system_message_however_many_tabs_end_it(
        live, parts_store):
    cid = start(live)

    live.visitors.end(cid)
    live.visitors.end(cid)  # a second tab, or the same one again

    messages = log(parts_store, cid)
    assert system(messages) == [("closed", "closed")]
    closed = messages[-1]
    assert closed["reason"] == "visitor" and closed["text"] == "The visitor ended the conversation."
    assert parts_store.record(cid)["status"] == "closed"
    assert parts_store.record(cid)["closed_reason"] == "visitor"
    assert lifecycle.status_frame(closed) == {"type": "status", "conversation": cid,
                                              "status": "closed", "reason": "visitor"}
    with pytest.raises(Closed):
        live.visitors.say(cid, "hello?", "late")


def test_a_verified_visitors_index_goes_with_the_close_and_spares_a_newer_conversation(
        live, parts_store, redis):
    index = f"{parts_store.prefix}visitor:{ADA['user_id']}"
    first = start(live, ADA)
    assert redis.get(index) == first

    live.visitors.end(first)

    assert redis.get(index) is None and parts_store.record(first)["status"] == "closed"
    # Closing an old conversation never takes the index of the person's newer one.
    older, newer = start(live, ADA), start(live, ADA)
    assert redis.get(index) == newer
    live.visitors.end(older)
    assert redis.get(index) == newer


def test_the_bots_end_closes_in_its_own_store_with_a_system_message(live, parts_store, redis):
    cid = start(live, ADA)

    say(live, cid, "No, that's all", "v1")  # an intent of every state: goodbye

    messages = log(parts_store, cid)
    assert messages[-2]["from"] == "bot" and messages[-2]["text"].startswith("Thanks for visiting")
    assert system(messages) == [("closed", "closed")] and messages[-1]["reason"] == "bot"
    assert parts_store.record(cid)["status"] == "closed"
    assert redis.get(f"{parts_store.prefix}visitor:{ADA['user_id']}") is None
    assert redis.zscore(live.timers.key, cid) is None  # no idle wake-up for a closed one


def test_an_escalation_is_queued_by_the_turns_store_before_routing_hears_of_it(live, parts_store):
    seen: list[tuple[str, str]] = []

    def hand_over(cid: str, escalation: dict[str, Any]) -> bool:
        seen.append((parts_store.record(cid)["status"], escalation["queue"]))
        return True  # routing takes it from here

    live.bot.anybody_there = lambda output: True  # a person of the queue is there
    live.lifecycle.hand_over = hand_over
    cid = start(live)

    say(live, cid, "I want to talk to a person", "v1")

    messages = log(parts_store, cid)
    assert seen == [("queued", "support")]  # stored as queued first, then handed over
    assert messages[-2]["from"] == "bot" and messages[-2]["text"].startswith("Connecting you")
    assert system(messages) == [("queued", "queued")] and messages[-1]["queue"] == "support"
    assert parts_store.record(cid)["status"] == "queued"
    assert parts_store.field(cid, "escalation")["queue"] == "support"


def test_nobody_taking_a_queued_conversation_runs_no_agents_as_a_turn_of_its_own(live, parts_store):
    live.bot.anybody_there = lambda output: True  # someone seemed there, then routing found none
    cid = start(live)

    say(live, cid, "I want to talk to a person", "v1")

    messages = log(parts_store, cid)
    assert system(messages) == [("queued", "queued"), ("to_bot", "bot")]
    back = next(i for i, m in enumerate(messages) if m.get("event") == "to_bot")
    assert messages[back]["reason"] == "no_agents"
    assert [m["text"] for m in messages[back + 1:]] == [
        "Our team isn't available right now, but we'll get back to you.",
        "What's your email address?"]
    assert parts_store.record(cid)["status"] == "bot"


def test_leaving_the_queue_goes_on_at_no_agents_and_skips_what_was_said_while_waiting(
        live, parts_store):
    manual(live, "support")  # an agent is there, but nobody takes it: it waits
    seat(live, "ada")
    cid = start(live)
    say(live, cid, "I want to talk to a person", "v1")
    say(live, cid, "hello? anyone there?", "v2")  # for the person, not the bot

    live.visitors.leave_queue(cid)
    settle()

    messages = log(parts_store, cid)
    assert messages[-3]["event"] == "to_bot" and messages[-3]["reason"] == "left_queue"
    assert messages[-1]["text"] == "What's your email address?"
    say(live, cid, "ada@example.com", "v3")  # the bot's next answer is to this, not to "hello?"
    assert log(parts_store, cid)[-1]["text"] == "And what would you like to tell us?"
    assert parts_store.field(cid, "bot")["vars"]["email"] == "ada@example.com"


def test_a_no_agents_turn_for_a_conversation_that_is_not_queued_changes_nothing(live, parts_store):
    cid = start(live)
    before = log(parts_store, cid)

    live.bot.act(cid, Reason.NO_AGENTS)

    assert log(parts_store, cid) == before and parts_store.record(cid)["status"] == "bot"


def test_every_system_message_names_the_status_its_frame_reports(live, parts_store):
    live.bot.anybody_there = lambda output: True
    cid = start(live)
    say(live, cid, "I want to talk to a person", "v1")
    live.visitors.end(cid)

    frames = [lifecycle.status_frame(m) for m in log(parts_store, cid)]
    assert [f["status"] for f in frames if f] == ["queued", "bot", "closed"]
    assert all(f is None for f, m in zip(frames, log(parts_store, cid), strict=True)
               if m["from"] != "system")
    assert json.loads(json.dumps(frames[-1])) == {"type": "status", "conversation": cid,
                                                   "status": "closed", "reason": "visitor"}


def test_a_no_agents_turn_that_meets_a_busy_lock_comes_back_for_it(live, conversations,
                                                                    parts_store, redis):
    live.bot.anybody_there = lambda output: True
    live.lifecycle.hand_over = lambda cid, escalation: True
    cid = start(live)
    say(live, cid, "I want to talk to a person", "v1")
    conversations.begin_turn(cid, "holder")  # a turn whose worker died holds the lock…
    redis.pexpire(parts_store.lock_key(cid), 200)  # …until it runs out, a moment from now

    # As if it had met the busy lock as often as a visitor message's turn ever waits.
    live.bot.act(cid, Reason.NO_AGENTS, why="left_queue", attempt=LOCK_RETRIES)
    settle()

    assert system(log(parts_store, cid))[-1] == ("to_bot", "bot")
