"""Idle deadlines: the wake-ups every worker sweeps from Redis, and the idle turn one starts.

How they fire in live conversations, over the socket, is in test_idle.py.
"""

from __future__ import annotations

import time

import gevent
import pytest
import redis as redis_lib
from redis import Redis

from chat.timers import SWEEP_BATCH, IdleTimers
from chat.turns import Reason
from tests.chat.conftest import PREFIX, started, visitor_says

REARMED_S = 900  # the default flow's idle_timeout: a visitor who just spoke
CLOSE_S = 0.001  # a deadline this close to the sweep's clock, on either side of it
PAST_DUE = 5  # deadlines beyond a full batch: left for the next sweep


def deadlines(redis: Redis, timers: IdleTimers) -> dict[str, float]:
    return dict(redis.zrange(timers.key, 0, -1, withscores=True))


def test_take_due_takes_each_passed_deadline_once_and_leaves_the_others_as_they_were(
        redis, timers):
    now = time.time()
    future = {"c_not_yet": now + CLOSE_S, "c_later": now + REARMED_S}
    redis.zadd(timers.key, {"c_long_ago": now - REARMED_S, "c_just_now": now - CLOSE_S,
                            **future})

    assert sorted(timers.take_due(now)) == ["c_just_now", "c_long_ago"]
    assert timers.take_due(now) == []  # taken once: a second sweep finds nothing
    assert deadlines(redis, timers) == pytest.approx(future)


def test_a_sweep_takes_a_batch_of_the_longest_due_and_the_next_one_the_rest(redis, timers):
    now = time.time()
    due = [f"c_{n}" for n in range(SWEEP_BATCH + PAST_DUE)]  # c_0 has waited longest
    redis.zadd(timers.key, {cid: now - REARMED_S + n for n, cid in enumerate(due)})

    first = timers.take_due(now)
    second = timers.take_due(now)

    assert first == due[:SWEEP_BATCH]
    assert second == due[SWEEP_BATCH:]
    assert timers.take_due(now) == [] and deadlines(redis, timers) == {}


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


def test_the_idle_turn_does_not_fire_while_a_visitor_message_waits_for_its_answer(
        live, bot, conversations, timers, parts_store):
    cid = started(live)
    # The visitor speaks just as the sweep takes the deadline (so it is no longer armed).
    visitor_says(conversations, cid, "shipping", "v1", token="")
    timers.disarm(cid)

    bot.act(cid, Reason.IDLE)

    # No goodbye (the flow's on_idle): the message is answered instead, the conversation open.
    said = [(m["from"], m["text"]) for m in parts_store.log(cid)[2:]]
    assert said[0] == ("visitor", "shipping") and said[1][1].startswith("We ship"), said
    assert conversations.get(cid).status == "bot"
