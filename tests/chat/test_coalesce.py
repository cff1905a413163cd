"""Shared round trips (chat/coalesce.py): calls gathered into one write, each answered alone."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import gevent
import pytest
import redis as redis_lib

from chat.coalesce import Coalescer
from tests.support.process import free_port
from tests.support.redis_proxy import RedisProxy
from tests.support.redis_server import RedisServer

ROOT = Path(__file__).resolve().parents[2]
ECHO = ("if ARGV[1] == 'bad' then return redis.error_reply('ERR bad argument') end "
        "redis.call('INCR', KEYS[1]) return ARGV[1]")


class CountingPool(redis_lib.BlockingConnectionPool):
    """A real pool that counts its checkouts: the sender keeps the one it took."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.checkouts = 0

    def get_connection(self, *args, **kwargs):
        self.checkouts += 1
        return super().get_connection(*args, **kwargs)


def client_of(url: str) -> redis_lib.Redis:
    return redis_lib.Redis(connection_pool=CountingPool.from_url(url, max_connections=4,
                                                                 decode_responses=True))


def script_loads(redis) -> int:
    """SCRIPT LOAD calls Redis has run (named `script|load` since Redis 7, `script` before)."""
    stats = redis.info("commandstats")
    return sum(stats.get(name, {}).get("calls", 0) for name in ("cmdstat_script|load",
                                                                 "cmdstat_script"))


def call_all(shared, args: list[str]) -> list[object]:
    """Call from one greenlet per argument at once; each one's reply or exception."""
    def one(arg: str) -> object:
        try:
            return shared(keys=["calls"], args=[arg])
        except redis_lib.RedisError as exc:
            return exc

    callers = [gevent.spawn(one, arg) for arg in args]
    gevent.joinall(callers, timeout=10, raise_error=True)
    return [caller.value for caller in callers]


def test_calls_made_at_once_share_one_round_trip_and_each_gets_its_own_reply(redis, redis_server):
    client = client_of(redis_server)
    coalescer = Coalescer(client)
    shared = coalescer.wrap(client.register_script(ECHO))
    client.script_load(ECHO)
    client.connection_pool.checkouts = 0
    args = [f"call {n}" for n in range(50)]

    assert call_all(shared, args) == args
    assert coalescer.batches == 1  # one write, fifty replies
    assert redis.get("calls") == "50"
    assert call_all(shared, ["more", "calls"]) == ["more", "calls"]
    assert coalescer.batches == 2
    assert client.connection_pool.checkouts == 1  # the sender kept its connection


def test_a_caller_sending_several_calls_gets_each_ones_reply_or_error_in_order(redis,
                                                                              redis_server):
    client = client_of(redis_server)
    coalescer = Coalescer(client)
    script = client.register_script(ECHO)
    client.script_load(ECHO)

    def many() -> list[object]:
        return coalescer.many([
            (script, ("EVALSHA", script.sha, 1, "calls", "first"), "calls"),
            (None, ("ZADD", "wake", 12.5, "c_1"), "wake"),
            (None, ("HSET", "calls", "f", "v"), "calls"),  # a string key: WRONGTYPE
            (script, ("EVALSHA", script.sha, 1, "calls", "last"), "calls")])

    caller = gevent.spawn(many)
    caller.join(timeout=10)
    first, added, wrong, last = caller.value

    assert (first, added, last) == ("first", 1, "last")
    assert isinstance(wrong, redis_lib.ResponseError) and "WRONGTYPE" in str(wrong)
    assert coalescer.batches == 1
    assert redis.zscore("wake", "c_1") == 12.5


def test_an_error_reply_fails_its_own_call_alone(redis, redis_server):
    client = client_of(redis_server)
    shared = Coalescer(client).wrap(client.register_script(ECHO))

    replies = call_all(shared, ["one", "bad", "three"])

    assert replies[0] == "one" and replies[2] == "three"
    assert isinstance(replies[1], redis_lib.ResponseError) and "bad argument" in str(replies[1])


def test_calls_after_redis_forgot_their_script_load_it_once_and_run(tmp_path):
    # A Redis of its own: the session's servers, sweeping on the session's Redis, would load
    # their own scripts again after the flush, and count among the loads.
    with RedisServer(tmp_path) as server:
        redis = redis_lib.Redis.from_url(server.url, decode_responses=True)
        client = client_of(server.url)
        coalescer = Coalescer(client)
        shared = coalescer.wrap(client.register_script(ECHO))
        assert shared(keys=["calls"], args=["before"]) == "before"
        redis.script_flush()  # as after a restart of a Redis that keeps no scripts
        loads_before, batches_before = script_loads(redis), coalescer.batches

        assert call_all(shared, ["after", "and", "more"]) == ["after", "and", "more"]
        assert redis.get("calls") == "4"
        assert coalescer.batches == batches_before + 2  # the batch Redis refused, then again
        assert script_loads(redis) == loads_before + 1
        redis.close()


def test_a_dropped_connection_is_dialled_again_and_nothing_is_stored_twice(redis, redis_server):
    proxy = RedisProxy(int(redis_server.rsplit(":", 1)[1].split("/")[0]))
    client = client_of(proxy.url)
    shared = Coalescer(client).wrap(client.register_script(ECHO))
    assert shared(keys=["calls"], args=["first"]) == "first"

    proxy.cut()  # the pooled connection is dead; the next batch finds out and dials again
    assert call_all(shared, ["a", "b"]) == ["a", "b"]
    assert redis.get("calls") == "3"
    proxy.close()


def test_with_redis_unreachable_every_call_of_the_batch_fails_and_the_next_batch_tries_again():
    client = client_of(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    shared = Coalescer(client).wrap(client.register_script(ECHO))

    for _ in range(2):
        failed = call_all(shared, ["c", "d", "e"])
        assert all(isinstance(reply, redis_lib.ConnectionError) for reply in failed), failed


@pytest.mark.timeout(60)
def test_under_gevent_calls_share_round_trips_and_killed_callers_leave_nobody_waiting(
        redis, redis_server):
    # A worker's setting: patched sockets, so callers wait on Redis while others queue theirs.
    result = subprocess.run([sys.executable, "-m", "tests.support.coalesce_probe", redis_server],
                            cwd=ROOT, capture_output=True, text=True, timeout=45, check=True)
    probe = json.loads(result.stdout.strip().splitlines()[-1])

    assert probe["wrong"] == []
    assert probe["stuck"] == 0 and probe["last"] == "last"
    assert probe["done"] >= 900  # 180 callers lived through their 5 calls
    assert probe["batches"] < probe["done"] / 2  # most calls went in a batch with others
    assert probe["stored"] >= probe["done"] + 1


@pytest.mark.parametrize("release", [False, True])
def test_a_bot_turn_whose_reply_was_lost_is_not_stored_twice_when_sent_again(redis, redis_server,
                                                                            release):
    from chat import frames, scripts  # noqa: PLC0415
    from chat.conversations import LOG, Conversations  # noqa: PLC0415

    proxy = RedisProxy(int(redis_server.rsplit(":", 1)[1].split("/")[0]))
    client = client_of(proxy.url)
    coalescer = Coalescer(client)
    conversations = Conversations(client, "lost-reply:", 3600, 1000, coalescer)
    warm = gevent.spawn(coalescer.many, [(None, ("SET", "lost-reply:warm", "1"), "warm")])
    warm.join(timeout=10)  # the sender's connection is open: the next reply lost is the turn's
    assert warm.value == ["OK"]
    client.script_load(scripts.source("store_turn.lua"))  # Redis runs it the first time
    began = conversations.create_and_begin("default", {"verified": False}, "holder")
    cid = began.conversation.id
    said = [frames.message(cid, "bot", text, message_id=f"m_{n}")
            for n, text in enumerate(("One.", "Two."))]

    proxy.lose_next_reply()  # Redis stores the turn; the worker never hears it did
    turn = gevent.spawn(conversations.stored_turn, cid, "holder", said, {"bot_seq": 0},
                        status="bot", release=release)
    turn.join(timeout=10)

    assert proxy.replies_lost == 1
    assert turn.successful(), turn.exception  # sent again: the first run's result, no LockLost
    more, seq = turn.value
    assert (more, seq) == (False, 2)
    log = [json.loads(m)["text"] for m in redis.lrange(LOG.format(prefix="lost-reply:", cid=cid),
                                                         0, -1)]
    assert log == ["One.", "Two."]  # once
    proxy.close()


def test_a_sender_killed_between_bursts_is_replaced_by_the_next_call(redis_server):
    client = client_of(redis_server)
    coalescer = Coalescer(client)
    first = gevent.spawn(coalescer.many, [(None, ("SET", "killed-sender:k", "1"), "k")])
    first.join(timeout=10)
    assert first.value == ["OK"]
    sender, _bell = coalescer._senders[""]
    assert not sender.dead  # it waits for the next burst rather than ending
    sender.kill(timeout=5)  # a worker stopping kills every greenlet, the sender's too

    second = gevent.spawn(coalescer.many, [(None, ("GET", "killed-sender:k"), "k")])
    second.join(timeout=10)

    assert second.successful() and second.value == ["1"]
    assert coalescer._senders[""][0] is not sender
    client.close()


def test_replies_of_every_kind_come_back_as_redis_py_gives_them(redis_server):
    """The shared round trips pack and parse Redis's protocol themselves (chat/resp.py): a
    real Redis's replies of each kind, on the pool's own protocol (RESP3)."""
    client = client_of(redis_server)
    coalescer = Coalescer(client)
    big = "é" * 150_000  # 300 KB: several reads of the socket
    calls = [("SET", "kinds:s", "d'été ✓"), ("GET", "kinds:s"), ("GET", "kinds:none"),
             ("INCRBY", "kinds:n", 41), ("INCR", "kinds:s"), ("HSET", "kinds:h", "f", 1.5),
             ("HGETALL", "kinds:h"), ("ZADD", "kinds:z", 2.5, "m"), ("ZSCORE", "kinds:z", "m"),
             ("SET", "kinds:big", big), ("GET", "kinds:big"), ("EXISTS", "kinds:none")]
    job = gevent.spawn(coalescer.many, [(None, call, call[1]) for call in calls])
    job.join(timeout=10)
    got = job.value
    assert got[:4] == ["OK", "d'été ✓", None, 41]
    assert isinstance(got[4], redis_lib.ResponseError) and "not an integer" in str(got[4])
    assert got[5:9] == [1, {"f": "1.5"}, 1, 2.5]
    assert got[9:] == ["OK", big, 0]
    assert client.get("kinds:s") == "d'été ✓"  # stored as redis-py would have sent it


def test_an_argument_redis_cannot_take_fails_its_own_call_and_the_sender_goes_on(redis_server):
    client = client_of(redis_server)
    coalescer = Coalescer(client)
    bad = gevent.spawn(coalescer.many, [(None, ("SET", "bad-arg:k", None), "k")])
    bad.join(timeout=10)
    assert isinstance(bad.exception, redis_lib.DataError)  # raised in the caller, not sent
    good = gevent.spawn(coalescer.many, [(None, ("SET", "bad-arg:k", 7),
                                          "k")])
    good.join(timeout=10)
    assert good.value == ["OK"] and client.get("bad-arg:k") == "7"
