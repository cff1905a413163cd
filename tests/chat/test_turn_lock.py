"""The turn lock taken with the visitor's message and freed with the bot's answer (real Redis)."""

from __future__ import annotations

import json
import time

import pytest

from chat import frames
from chat.conversations import TURN_LOCK_TTL_MS
from chat.turns import Reason
from tests.chat.conftest import started, ungreeted, visitor_says

IDLE_TIMEOUT_S = 900  # flows/default.yaml


def test_a_message_to_the_bot_takes_the_free_turn_lock_and_reads_the_turn(conversations,
                                                                          redis, parts_store):
    cid = ungreeted(conversations, {"verified": False, "name": "Ada"})

    seq, new, status, began = visitor_says(conversations, cid, "shipping", "a1")[:4]

    assert (seq, new, status) == (1, True, "bot")
    assert began.token == "tok" and redis.get(parts_store.lock_key(cid)) == "tok"
    assert 0 < redis.pttl(parts_store.lock_key(cid)) <= TURN_LOCK_TTL_MS
    assert began.conversation.visitor == {"verified": False, "name": "Ada"}
    assert began.conversation.seq == 1 and began.conversation.bot_seq == 0
    assert [m["text"] for m in map(json.loads, began.unseen)] == ["shipping"]


def test_a_message_leaves_a_held_lock_to_its_holder(conversations, redis, parts_store):
    cid = ungreeted(conversations)
    holder = conversations.begin_turn(cid, "holder").token

    seq, new, status, began = visitor_says(conversations, cid, "shipping", "a1")[:4]

    assert (seq, new, status, began) == (1, True, "bot", None)
    assert redis.get(parts_store.lock_key(cid)) == holder


@pytest.mark.parametrize("case", ["repeated id", "with a person"])
def test_a_message_the_bot_does_not_answer_takes_no_lock(conversations, redis, parts_store, case):
    cid = ungreeted(conversations)
    if case == "repeated id":
        visitor_says(conversations, cid, "shipping", "a1", token="")
    else:
        conversations.update(cid, status="agent")

    seq, new, _status, began = visitor_says(conversations, cid, "shipping", "a1")[:4]

    assert began is None and redis.get(parts_store.lock_key(cid)) is None
    assert (seq, new) == ((1, False) if case == "repeated id" else (1, True))


def test_storing_the_last_answer_frees_the_lock_and_says_whether_more_waits(conversations,
                                                                            redis, parts_store):
    cid = ungreeted(conversations)
    began = visitor_says(conversations, cid, "shipping", "a1").began
    answer = [frames.message(cid, "bot", "We ship within 2 days.", message_id="m_1")]
    assert conversations.store_turn(cid, began.token, answer, {"bot_seq": 1},
                                    status="bot", release=True) is False
    assert redis.get(parts_store.lock_key(cid)) is None

    began = visitor_says(conversations, cid, "hours", "a2").began
    visitor_says(conversations, cid, "and returns?", "a3")  # while the bot answers a2
    assert conversations.store_turn(cid, began.token, answer, {"bot_seq": 3},
                                    status="bot", release=True) is True
    assert redis.get(parts_store.lock_key(cid)) is None


def test_a_store_with_a_pipelined_command_works_after_redis_forgot_its_scripts(conversations,
                                                                               redis, parts_store):
    cid = ungreeted(conversations)
    began = visitor_says(conversations, cid, "shipping", "a1").began
    redis.script_flush()  # as after a Redis restart without persistence of scripts

    more = conversations.store_turn(
        cid, began.token, [frames.message(cid, "bot", "Answer.", message_id="m_1")],
        {"bot_seq": 1}, status="bot", release=True, also=[("SET", "also", "ran")])

    assert more is False and redis.get("also") == "ran"
    stored = [json.loads(m) for m in redis.lrange(parts_store.keys(cid)[1], 0, -1)]
    assert [(m["seq"], m["text"]) for m in stored] == [(1, "shipping"), (2, "Answer.")]
    assert redis.get(parts_store.lock_key(cid)) is None


def test_a_wake_up_before_the_stored_deadline_is_put_back_and_says_nothing(live, bot,
                                                                           conversations,
                                                                           redis, parts_store):
    timers = bot.timers
    cid = started(live)
    deadline = conversations.get(cid).idle_at
    assert deadline == pytest.approx(time.time() + IDLE_TIMEOUT_S, abs=60)
    assert redis.zscore(timers.key, cid) == pytest.approx(deadline, abs=0.001)
    said = redis.llen(parts_store.keys(cid)[1])
    timers.disarm(cid)  # taken by a sweep: an early wake-up (another instance's clock)

    bot.act(cid, Reason.IDLE)

    assert redis.llen(parts_store.keys(cid)[1]) == said
    assert redis.zscore(timers.key, cid) == pytest.approx(deadline, abs=0.001)
    assert redis.get(parts_store.lock_key(cid)) is None


def test_a_message_that_came_during_an_idle_turn_is_answered_when_it_ends(live, bot,
                                                                          conversations,
                                                                          redis, parts_store):
    cid = started(live)
    # The visitor writes as the deadline passes; the idle turn got the lock first, so the
    # message's worker left it to the lock's holder.
    conversations.update(cid, idle_at=f"{time.time() - 1:.3f}")
    began = visitor_says(conversations, cid, "shipping", "late", token="").began
    assert began is None

    bot.act(cid, Reason.IDLE)

    said = [(m["from"], m["text"]) for m in parts_store.log(cid)]
    late = said.index(("visitor", "shipping"))
    assert said[late + 1][0] == "bot" and said[late + 1][1].startswith("We ship"), said
    assert redis.get(parts_store.lock_key(cid)) is None
