"""The worker's Redis pool: running dry is overload (the socket stays), not Redis being away."""

from __future__ import annotations

import pytest
import redis as redis_lib

from runtime import wiring


def test_a_pool_that_stays_busy_says_so_apart_from_redis_being_away(redis_server, monkeypatch):
    monkeypatch.setattr(wiring, "POOL_WAIT_S", 0.05)
    client = redis_lib.Redis(connection_pool=wiring._pool(redis_server, 1))
    held = client.connection_pool.get_connection()
    try:
        with pytest.raises(wiring.PoolExhausted, match="no Redis connection free"):
            client.ping()
    finally:
        client.connection_pool.release(held)
    assert client.ping() is True  # free again: the next command goes through


def test_redis_that_does_not_answer_is_not_taken_for_a_busy_pool():
    client = redis_lib.Redis(connection_pool=wiring._pool("redis://127.0.0.1:1/0", 1))
    with pytest.raises(redis_lib.ConnectionError) as raised:
        client.ping()
    assert not isinstance(raised.value, wiring.PoolExhausted)


def test_redis_replies_are_parsed_without_hiredis():
    # Under gevent hiredis's readiness checks cost more worker CPU than it saves parsing
    # (docs/operating.md, "Redis"): an environment that has it installed runs slower.
    assert not redis_lib.utils.HIREDIS_AVAILABLE, "uninstall hiredis: it slows the workers"
