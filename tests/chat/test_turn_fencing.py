"""Fencing: a bot's turn writes only while it holds the turn lock and the status it began in.

A turn that lost its lock (it ran out, or another turn took it) stores no message and leaves the
conversation's record and its idle deadline as the holder left them; a turn whose conversation
changed status meanwhile (the visitor ended it) stores nothing either.
"""

from __future__ import annotations

import time

import pytest

from chat import frames
from chat.conversations import Began, LockLost, Moved
from chat.turns import Reason
from tests.chat.conftest import started, ungreeted, visitor_says

REARMED_S = 900  # the default flow's idle_timeout: a visitor who just spoke


def a_bot_message(cid: str) -> list[dict]:
    return [frames.message(cid, "bot", "An answer.", message_id="m_answer")]


def without_stamp(record: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in record.items() if k != "updated"}


@pytest.mark.parametrize("holder", ["another turn", "nobody"])
def test_a_turn_whose_lock_is_gone_stores_nothing(conversations, parts_store, holder):
    cid = ungreeted(conversations)
    token = conversations.begin_turn(cid, "holder").token
    if holder == "nobody":  # the lock ran out
        conversations.end_turn(cid, token)
    record = parts_store.record(cid)

    with pytest.raises(LockLost):
        conversations.store_turn(cid, "lost-token", a_bot_message(cid), {"bot_seq": 7},
                                 status="bot")

    assert parts_store.log(cid) == []
    assert without_stamp(parts_store.record(cid)) == without_stamp(record)


def test_the_holder_of_the_turn_lock_stores_its_turn(conversations, parts_store):
    cid = ungreeted(conversations)
    token = conversations.begin_turn(cid, "holder").token
    conversations.store_turn(cid, token, a_bot_message(cid), {"bot_seq": 7}, status="bot")
    assert [m["text"] for m in parts_store.log(cid)] == ["An answer."]
    assert parts_store.record(cid)["bot_seq"] == "7"


def test_a_turn_whose_conversation_closed_meanwhile_stores_nothing(
        live, conversations, parts_store):
    cid = started(live)
    token = conversations.begin_turn(cid, "holder").token
    live.visitors.end(cid)  # the visitor ends it while the bot's turn runs
    said = parts_store.log(cid)

    with pytest.raises(Moved):
        conversations.store_turn(cid, token, a_bot_message(cid), {"bot_seq": 7}, status="bot")

    assert parts_store.log(cid) == said and parts_store.record(cid)["status"] == "closed"


def test_a_message_turn_that_lost_its_lock_answers_nothing_and_frees_nothing(
        live, bot, conversations, redis, parts_store):
    cid = started(live)
    began = visitor_says(conversations, cid, "shipping", "v1", token="stale").began
    # The stale turn's lock ran out and another worker's turn holds it now.
    conversations.end_turn(cid, "stale")
    holder = conversations.begin_turn(cid, "holder").token
    record = parts_store.record(cid)

    bot.act(cid, Reason.MESSAGE, began=began)

    assert [m["from"] for m in parts_store.log(cid)][-1] == "visitor"  # no answer was stored
    assert without_stamp(parts_store.record(cid)) == without_stamp(record)
    assert redis.get(parts_store.lock_key(cid)) == holder  # and the holder keeps its lock


@pytest.mark.parametrize("timer", ["arm", "disarm"])
def test_a_turn_whose_lock_is_gone_leaves_the_idle_deadline_alone(
        live, bot, conversations, timers, redis, parts_store, timer):
    cid = started(live)
    # The turn that holds the lock now has stored a state that waits for the visitor: with a
    # deadline, or with none (it was the idle prompt, said once per silence).
    holder = conversations.begin_turn(cid, "holder").token
    conversations.store_turn(cid, holder, [], {
        "idle_at": f"{time.time() + REARMED_S:.3f}" if timer == "disarm" else ""}, status="bot")
    timers.disarm(cid)
    if timer == "disarm":
        timers.arm(cid, REARMED_S)
    deadline = parts_store.record(cid).get("idle_at")
    wake_up = redis.zscore(timers.key, cid)
    # A stale turn of a message: one whose answer would arm the deadline ("shipping" waits for
    # the visitor again) or disarm it ("bye" ends the conversation).
    visitor_says(conversations, cid, "shipping" if timer == "arm" else "bye", "v1", token="")

    bot.act(cid, Reason.MESSAGE, began=_stale(conversations, cid))

    assert parts_store.record(cid).get("idle_at") == deadline
    assert parts_store.record(cid)["status"] == "bot"
    if timer == "disarm":
        assert redis.zscore(timers.key, cid) == wake_up  # the holder's wake-up still comes
        return
    # The stale turn may have queued a wake-up (it went with the refused store): when it comes,
    # the conversation, whose record has no deadline, is left alone (no second idle prompt),
    # and the idle turn lets go of the lock.
    conversations.end_turn(cid, holder)
    said = len(parts_store.log(cid))
    timers.arm(cid, -1)
    bot.act(cid, Reason.IDLE)
    answer = [m["text"] for m in parts_store.log(cid)[said:]]
    assert answer[0].startswith("We ship"), answer  # the message is answered, no idle prompt
    assert not any(text.startswith("Thanks for visiting") for text in answer)
    assert conversations.begin_turn(cid, "after") is not None


def _stale(conversations, cid: str):
    """A begun turn whose token is not the lock's: what a worker holds after its lock ran out."""
    began = conversations.begin_turn(cid, "never-taken")
    assert began is None  # the holder has it
    record = conversations.get(cid)
    unseen = conversations.messages(cid, record.bot_seq)
    return Began(record, unseen, "lost-token")


def test_a_turn_that_lost_its_lock_puts_the_holders_wake_up_back(live, bot, conversations,
                                                                 redis, parts_store):
    cid = started(live)
    holder = conversations.begin_turn(cid, "holder").token
    holders_deadline = time.time() + 60
    conversations.store_turn(cid, holder, [], {"idle_at": f"{holders_deadline:.3f}"},
                             status="bot")
    bot.timers.arm_at(cid, holders_deadline)
    visitor_says(conversations, cid, "shipping", "v1", token="")  # its answer waits for input:
    # a stale turn answering it would arm a wake-up 900 s away, in the store's round trip

    bot.act(cid, Reason.MESSAGE, began=_stale(conversations, cid))

    assert redis.zscore(bot.timers.key, cid) == pytest.approx(holders_deadline, abs=0.001)
    assert [m["from"] for m in parts_store.log(cid)][-1] == "visitor"
