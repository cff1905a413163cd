"""The hub's pub/sub connection, as each worker makes it."""

from __future__ import annotations

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
