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
