"""The hub's pub/sub connection, as each worker makes it."""

from __future__ import annotations

import json
import time

from runtime.wiring import pubsub_redis

WAIT_S = 5.0


def next_message(pubsub) -> dict:
    message = pubsub.get_message(timeout=WAIT_S)
    assert message is not None, "no answer from Redis"
    return message


def test_a_heartbeat_on_the_subscription_is_answered_with_a_pong(redis_server, redis):
    pubsub = pubsub_redis(redis_server).pubsub()
    try:
        pubsub.subscribe("concierge:conv:c_heartbeat")
        assert next_message(pubsub)["type"] == "subscribe"
        pubsub.ping()
        # Under RESP3 this came back as {'type': 'P', 'channel': 'O', 'data': 'N'}: the hub took
        # it for silence and rebuilt every subscription each 30 s.
        assert next_message(pubsub)["type"] == "pong"
        redis.publish("concierge:conv:c_heartbeat", '{"type":"typing"}')
        assert next_message(pubsub) == {"type": "message", "pattern": None,
                                        "channel": "concierge:conv:c_heartbeat",
                                        "data": '{"type":"typing"}'}
    finally:
        pubsub.close()


def test_sockets_arriving_while_the_pubsub_is_made_share_one_dispatcher(redis_server):
    # On a cluster making the pubsub dials a node, so other greenlets run meanwhile: each
    # started a dispatcher of its own on the one connection (ConcurrentObjectUseError).
    import gevent  # noqa: PLC0415

    from chat.hub import Hub  # noqa: PLC0415

    client = pubsub_redis(redis_server)
    made = []

    def make_pubsub():
        gevent.sleep(0.01)  # as a dial does: others run
        made.append(client.pubsub(ignore_subscribe_messages=False))
        return made[-1]

    hub = Hub(make_pubsub, "concierge:")
    runs = []
    hub._run = lambda: runs.append(1)  # count the dispatchers started, run none

    class Subscriber:
        def __init__(self) -> None:
            self.transport = object()

    watchers = [gevent.spawn(hub.watch, f"conv:c_{n}", Subscriber()) for n in range(20)]
    gevent.joinall(watchers, timeout=10, raise_error=True)
    gevent.sleep(0)  # let the spawned dispatcher start

    assert len(made) == 1 and len(runs) == 1
    assert set(made[0].channels) == {f"concierge:conv:c_{n}" for n in range(20)}
    made[0].close()


def test_on_one_redis_pubsub_stays_classic_with_the_channels_of_before(live, redis):
    # One Redis gains nothing from sharded pub/sub (and the embedded one, 6.2, has none):
    # PUBLISH in the scripts, SUBSCRIBE in the hub, channels named prefix + topic.
    from chat.hub import Hub  # noqa: PLC0415
    from tests.chat.conftest import PREFIX  # noqa: PLC0415

    assert type(live.hub) is Hub and not live.conversations.channels.sharded
    assert live.board.channels == PREFIX  # what routing's scripts put before a topic
    assert 'local PUBLISH = "PUBLISH"' in live.conversations._store.script
    cid = live.conversations.create_and_begin("default", {}, "t").conversation.id
    channel = live.conversations.channel(cid)
    assert channel == f"{PREFIX}conv:{cid}"
    pubsub = redis.pubsub(ignore_subscribe_messages=True)
    try:
        pubsub.subscribe(channel)
        live.conversations.store_turn(cid, "t", [{"type": "message", "from": "bot", "text": "Hi",
                                                  "conversation": cid, "id": "m_1"}], {},
                                      status="bot", release=True)
        live.conversations.publish(cid, {"type": "typing", "from": "bot"})
        heard, deadline = [], time.monotonic() + WAIT_S
        while len(heard) < 2 and time.monotonic() < deadline:
            if (message := pubsub.get_message(timeout=0.5)) is not None:
                heard.append(message)
        assert [(m["type"], json.loads(m["data"])["type"]) for m in heard] == \
            [("message", "message"), ("message", "typing")]
    finally:
        pubsub.close()
