"""The hub's reader of its pub/sub connection (chat/pushes.py), on a real Redis."""

from __future__ import annotations

import time

import pytest
import redis as redis_lib

from chat.pushes import PushReader
from runtime import redis_clients


def read_until(reader, pubsub, count, timeout=10.0):
    got, deadline = [], time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        got.extend(reader.read(pubsub, 0.5))
    return got


@pytest.fixture
def pubsub(redis_server):
    client = redis_clients.pubsub_client(redis_server)
    pubsub = client.pubsub(ignore_subscribe_messages=False)
    yield pubsub
    pubsub.close()
    client.close()


def test_every_reply_that_came_is_read_at_once_in_order(pubsub, redis):
    reader = PushReader()
    pubsub.subscribe("pushes:a")
    assert read_until(reader, pubsub, 1) == [("subscribe", "pushes:a", 1)]
    for n in range(50):
        redis.publish("pushes:a", f"frame {n} é")
    got = read_until(reader, pubsub, 50)
    assert got == [("message", "pushes:a", f"frame {n} é") for n in range(50)]


def test_a_reply_longer_than_one_read_comes_whole(pubsub, redis):
    reader = PushReader()
    pubsub.subscribe("pushes:big")
    read_until(reader, pubsub, 1)
    big = "x" * 200_000 + "\n" + "y" * 70_000  # several reads of 64 KiB
    redis.publish("pushes:big", big)
    redis.publish("pushes:big", "after")
    assert read_until(reader, pubsub, 2) == [("message", "pushes:big", big),
                                            ("message", "pushes:big", "after")]


def test_a_ping_is_a_pong_and_an_unsubscribe_is_told_to_redis_py(pubsub):
    reader = PushReader()
    pubsub.subscribe("pushes:b")
    read_until(reader, pubsub, 1)
    pubsub.ping()
    assert read_until(reader, pubsub, 1) == [("pong", "", None)]
    pubsub.unsubscribe("pushes:b")
    assert read_until(reader, pubsub, 1) == [("unsubscribe", "pushes:b", 0)]
    assert pubsub.channels == {} and not pubsub.subscribed  # as redis-py's own reader leaves it
    assert reader.read(pubsub, 0.1) == []  # unsubscribed: nothing to read, no error


def test_an_error_reply_is_raised_after_the_replies_before_it(pubsub, redis):
    reader = PushReader()
    pubsub.subscribe("pushes:c")
    read_until(reader, pubsub, 1)
    redis.publish("pushes:c", "one")
    redis.publish("pushes:c", "two")
    pubsub.execute_command("GET", "pushes:nothing")  # refused on a subscribed connection
    got = []
    with pytest.raises(redis_lib.ResponseError, match="only .*allowed in this context"):
        for _ in range(20):
            got.extend(reader.read(pubsub, 0.5))
    assert got == [("message", "pushes:c", "one"), ("message", "pushes:c", "two")]


def test_a_connection_closed_by_redis_is_a_connection_error(pubsub, redis):
    reader = PushReader()
    pubsub.subscribe("pushes:d")
    read_until(reader, pubsub, 1)
    redis.client_kill_filter(_type="pubsub")
    with pytest.raises(redis_lib.ConnectionError):
        for _ in range(20):
            reader.read(pubsub, 0.5)
