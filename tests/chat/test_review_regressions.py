"""Regressions found by the code review: idle deadlines, fenced turn writes, shared-browser
identity, and the protocol's contract for frames before hello, `end` and message ids.

The socket-level ones that need clients misbehaving on purpose are in test_slow_clients.py, and
the Redis outages in test_hub_resubscribe.py.
"""

from __future__ import annotations

import json
import threading
import time

import gevent
import pytest
import redis as redis_lib
from redis import Redis

from bots import engine
from bots.catalog import load_catalog, load_flow
from chat import frames
from chat.conversations import Conversations, LockLost
from chat.timers import IdleTimers
from chat.turns import Bot
from tests.chat.test_visitor_identity import user_hash
from tests.support.gunicorn_server import ROOT
from tests.support.ws import RECEIVE_TIMEOUT_S, bot_says, closed_status, of_type

PREFIX = "concierge:"
HOUR_S = 3600
REARMED_S = 900  # the default flow's idle_timeout: a visitor who just spoke
ENDED = "The visitor ended the conversation."


@pytest.fixture
def conversations(redis) -> Conversations:
    return Conversations(redis, PREFIX, HOUR_S)


@pytest.fixture
def timers(redis) -> IdleTimers:
    return IdleTimers(redis, PREFIX)


# --- idle deadlines ------------------------------------------------------------------------------


def test_take_due_leaves_a_deadline_that_was_armed_again_into_the_future(redis, timers):
    timers.arm("c_quiet", -1)  # due: the visitor went quiet
    timers.arm("c_quiet", REARMED_S)  # then spoke again
    assert timers.take_due() == []
    assert redis.zscore(timers.key, "c_quiet") > time.time() + REARMED_S - 60


class RearmingRedis(Redis):
    """A client that, right after the first command of a sweep, lets the visitor speak: the
    deadline is armed again, as another worker's turn would, between two of the sweep's steps."""

    cid = "c_speaks"
    key = f"{PREFIX}timers:idle"
    armed = False

    def execute_command(self, *args, **options):
        answer = super().execute_command(*args, **options)
        if not self.armed:
            self.armed = True
            self.zadd(self.key, {self.cid: time.time() + REARMED_S})
        return answer


def test_a_deadline_armed_again_while_a_sweep_takes_it_stays_armed(redis_server, redis, timers):
    timers.take_due()  # the sweep's script is loaded, as after a worker's first sweep
    timers.arm(RearmingRedis.cid, -1)
    sweeping = RearmingRedis.from_url(redis_server, decode_responses=True)
    try:
        IdleTimers(sweeping, PREFIX).take_due()
    finally:
        sweeping.close()
    # Taken or not, the visitor's new deadline is in the set: their silence is still watched.
    assert redis.zscore(timers.key, RearmingRedis.cid) > time.time() + REARMED_S - 60


def test_the_idle_turn_does_not_fire_while_a_visitor_message_waits_for_its_answer(
        conversations, timers, store):
    catalog = load_catalog(ROOT / "flows")
    bot = Bot(conversations, catalog, lambda visitor: engine.Context(visitor=visitor), timers)
    flow = catalog.get("default")
    cid = conversations.create(flow.id, {"verified": False})
    bot.start(cid, flow, {"verified": False})
    # The visitor speaks just as the sweep takes the deadline (so it is no longer armed).
    conversations.append(cid, frames.message(cid, "visitor", "shipping", message_id="v1"),
                         client_id="v:v1", open_only=True)
    timers.disarm(cid)

    bot.idle(cid)

    # No goodbye (the flow's on_idle): the message is answered instead, the conversation open.
    said = [(m["from"], m["text"]) for m in store.log(cid)[2:]]
    assert said[0] == ("visitor", "shipping") and said[1][1].startswith("We ship"), said
    assert conversations.get(cid).status == "bot"


def test_a_wake_up_whose_turn_failed_on_redis_fires_again(timers):
    fired: list[str] = []

    def fire(cid: str) -> None:
        fired.append(cid)
        if len(fired) == 1:
            raise redis_lib.ConnectionError("Redis went away mid-turn")

    timers.arm("c_blip", -1)
    gevent.joinall(timers.sweep_once(fire))  # taken (so gone from Redis), and failed
    gevent.joinall(timers.sweep_once(fire))  # put back, and fired again
    gevent.joinall(timers.sweep_once(fire))
    assert fired == ["c_blip", "c_blip"]


# --- fencing: a turn writes only while it holds the turn lock -----------------------------------


def a_bot_message(cid: str) -> list[dict]:
    return [frames.message(cid, "bot", "An answer.", message_id="m_answer")]


@pytest.mark.parametrize("holder", ["another turn", "nobody"])
def test_a_turn_whose_lock_is_gone_stores_nothing(conversations, store, holder):
    cid = conversations.create("default", {"verified": False})
    token = conversations.lock_turn(cid)
    if holder == "nobody":  # the lock ran out
        conversations.unlock_turn(cid, token)
    record = store.record(cid)

    with pytest.raises(LockLost):
        conversations.store_turn(cid, "lost-token", a_bot_message(cid), {"bot_seq": 7})

    assert store.log(cid) == []
    assert {k: v for k, v in store.record(cid).items() if k != "updated"} == \
        {k: v for k, v in record.items() if k != "updated"}


def test_the_holder_of_the_turn_lock_stores_its_turn(conversations, store):
    cid = conversations.create("default", {"verified": False})
    token = conversations.lock_turn(cid)
    conversations.store_turn(cid, token, a_bot_message(cid), {"bot_seq": 7})
    assert [m["text"] for m in store.log(cid)] == ["An answer."]
    assert store.record(cid)["bot_seq"] == "7"


@pytest.mark.parametrize("timer", ["arm", "disarm"])
def test_a_turn_whose_lock_is_gone_leaves_the_idle_deadline_alone(conversations, timers,
                                                                  redis, store, timer):
    flow, _problems = load_flow(ROOT / "flows" / "default.yaml")  # idle_timeout: 900
    bot = Bot(conversations, load_catalog(ROOT / "flows"), lambda visitor: engine.Context(),
              timers)
    cid = conversations.create("default", {"verified": False})
    holder = conversations.lock_turn(cid)  # the turn that holds the lock now has stored a
    # state that waits for the visitor: with a deadline, or with none (it was the idle prompt,
    # said once per silence).
    conversations.store_turn(cid, holder, [], {
        "bot": engine.start(flow).stored,
        "idle_at": f"{time.time() + REARMED_S:.3f}" if timer == "disarm" else ""})
    if timer == "disarm":
        timers.arm(cid, REARMED_S)
    deadline = store.record(cid).get("idle_at")
    wake_up = redis.zscore(timers.key, cid)
    # A stale turn: one that would arm the deadline (it waits for input) or disarm it (it ends).
    turn = engine.start(flow) if timer == "arm" else engine.reply(
        flow, engine.start(flow).stored, "bye")

    with pytest.raises(LockLost):
        bot._apply(cid, "lost-token", flow, {"verified": False}, turn, bot_seq=1)

    assert store.record(cid).get("idle_at") == deadline
    if timer == "disarm":
        assert redis.zscore(timers.key, cid) == wake_up  # the holder's wake-up still comes
        return
    # The stale turn may have queued a wake-up: when it comes, the conversation, whose record
    # has no deadline, is left alone (no second idle prompt).
    conversations.unlock_turn(cid, holder)
    said = len(store.log(cid))
    bot.idle(cid)
    assert len(store.log(cid)) == said
    assert conversations.lock_turn(cid) is not None  # and the idle turn let go of the lock


# --- identity on a shared browser ----------------------------------------------------------------


def verified(user_id: str, name: str) -> dict[str, str]:
    return {"user_id": user_id, "name": name, "email": f"{user_id}@example.com",
            "hash": user_hash(user_id)}


def test_a_verified_visitor_with_another_verified_visitors_token_gets_a_new_conversation(
        configured_server, open_visitor, configured_store):
    alice = verified("alice-7", "Alice")
    first = open_visitor(configured_server)
    hello = first.hello(None, identity=alice)
    first.talk("opening hours? I live at 1 Private Road", until=bot_says("anything else"))
    first.close()  # the widget keeps Alice's token in the browser

    bob = open_visitor(configured_server)  # Bob signs in on the same browser
    greeting = bob.hello(hello.token, identity=verified("bob-8", "Bob"), last_seq=0)
    assert greeting.conversation != hello.conversation
    assert [m["seq"] for m in greeting.messages] == [1, 2]
    assert greeting.messages[0]["text"] == "Hi Bob! I'm the Concierge assistant."
    assert all("Private Road" not in m["text"] for m in bob.messages)
    bob.talk("shipping", until=bot_says("anything else"))
    assert all("Private Road" not in m["text"] for m in bob.messages)

    alices = configured_store.field(hello.conversation, "visitor")
    assert (alices["user_id"], alices["name"], alices["verified"]) == ("alice-7", "Alice", True)
    assert configured_store.field(greeting.conversation, "visitor")["user_id"] == "bob-8"
    # Alice, on another device, still finds her own conversation.
    again = open_visitor(configured_server).hello(None, identity=alice)
    assert again.conversation == hello.conversation


# --- the protocol's contract ---------------------------------------------------------------------


def test_an_unknown_frame_type_before_hello_is_a_bad_frame(server, open_visitor):
    tab = open_visitor(server)
    tab.send({"type": "subscribe", "conversation": "c_x"})
    error = tab.receive()
    assert error["type"] == "error" and error["code"] == "bad_frame", error
    assert "hello" in error["message"]
    assert tab.hello(None).errors == []  # the socket goes on


ENDING_ROUNDS = 3  # conversations ended by two tabs at once: each is a fresh chance to race


def test_two_tabs_ending_at_once_close_the_conversation_once(server, open_visitor, store,
                                                              redis):
    for _ in range(ENDING_ROUNDS):
        check_two_tabs_end_at_once(server, open_visitor, store, redis)


def check_two_tabs_end_at_once(server, open_visitor, store, redis) -> None:
    tab_a = open_visitor(server)
    hello = tab_a.hello(None)
    cid = hello.conversation
    tab_b = open_visitor(server)
    tab_b.hello(hello.token, last_seq=hello.last_seq)

    both = threading.Barrier(2)

    def end(tab) -> None:
        both.wait(RECEIVE_TIMEOUT_S)
        tab.send({"type": "end"})

    senders = [threading.Thread(target=end, args=(tab,)) for tab in (tab_a, tab_b)]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join(RECEIVE_TIMEOUT_S)
    for tab in (tab_a, tab_b):  # a ping is answered after the tab's own `end` is handled
        tab.send({"type": "ping"})
        tab.receive_until(of_type("pong"))
    # Both ends are done and published; a last frame on the doorbell flushes what is on its way.
    marker = {"type": "typing", "conversation": cid, "from": "test", "active": False}
    redis.publish(f"{PREFIX}conv:{cid}", json.dumps(marker))
    for tab in (tab_a, tab_b):
        tab.receive_until(lambda f: f == marker)

    ended = [m for m in store.log(cid) if m["text"] == ENDED]
    assert len(ended) == 1 and ended[0]["from"] == "system", store.log(cid)
    for tab in (tab_a, tab_b):
        assert [m["text"] for m in tab.messages].count(ENDED) == 1
        statuses = [f for f in tab.frames if closed_status(f)]
        assert statuses == [{"type": "status", "conversation": cid, "status": "closed",
                             "reason": "visitor"}], tab.frames
    assert store.record(cid)["closed_reason"] == "visitor"
    tab_a.close()
    tab_b.close()


@pytest.mark.parametrize("message_id", ["end_{cid}", "s:end"])
def test_a_message_id_like_the_servers_own_does_not_swallow_the_end(server, open_visitor,
                                                                    store, message_id):
    tab = open_visitor(server)
    cid = tab.hello(None).conversation
    message_id = message_id.format(cid=cid)
    frames_ = tab.talk("opening hours", message_id=message_id, until=bot_says("anything else"))
    assert frames_[0] == {"type": "ack", "id": message_id, "seq": 3}

    tab.send({"type": "end"})
    tab.receive_until(closed_status)

    log = store.log(cid)
    assert [m["id"] for m in log if m["from"] == "visitor"] == [message_id]
    ended = [m for m in log if m["text"] == ENDED]
    assert len(ended) == 1 and ended[0]["from"] == "system" and ended[0] == log[-1], log
    assert [m["text"] for m in tab.messages][-1] == ENDED
