"""The worker's Redis pool: running dry is overload (the socket stays), not Redis being away."""

from __future__ import annotations

import pytest
import redis as redis_lib

from runtime import redis_clients, wiring
from tests.support.process import free_port


def test_a_pool_that_stays_busy_says_so_apart_from_redis_being_away(redis_server, monkeypatch):
    monkeypatch.setattr(redis_clients, "POOL_WAIT_S", 0.05)
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


def test_a_cluster_client_dials_on_first_use_and_says_a_cluster_away_as_redis_away():
    # redis-py's cluster client dials as it is made; ours waits for its first call, so that a
    # worker boots (and `flask flows …` runs) with the cluster away, and then says it as any
    # Redis away: a redis.ConnectionError, which every handler of ours expects.
    url = f"redis+cluster://127.0.0.1:{free_port()},127.0.0.1:{free_port()}"  # nobody there
    client = redis_clients.connect(url)
    for _attempt in range(2):  # each use tries again
        with pytest.raises(redis_lib.ConnectionError, match="Redis Cluster does not answer"):
            client.ping()
    with pytest.raises(redis_lib.ConnectionError, match="Redis Cluster does not answer"):
        client.pipeline(transaction=False).execute()
    assert redis_clients.unready_reason(client) == "Redis Cluster does not answer"
    client.close()


def test_a_single_redis_url_still_makes_one_pool(redis_server):
    client = redis_clients.connect(redis_server)
    assert isinstance(client, redis_lib.Redis)
    assert isinstance(client.connection_pool, redis_lib.BlockingConnectionPool)
    assert client.ping() is True
    assert redis_clients.unready_reason(client) is None
    client.close()
