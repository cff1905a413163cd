"""The clients the service makes from a `redis+cluster://` REDIS_URL (runtime/redis_clients.py),
on a real three-master cluster: per-node pools, a dry pool told apart from a failed node, the
readiness check, and the login limits' storage."""

from __future__ import annotations

import time

import gevent
import pytest
import redis as redis_lib
from redis.cluster import RedisCluster

from chat.coalesce import Coalescer
from runtime import redis_clients
from runtime.redis_clients import PoolExhausted

KEY = "{c_0001}:probe"


def slots_asked(cluster: RedisCluster) -> int:
    """CLUSTER SLOTS calls every master has answered so far: each is a topology refresh."""
    stats = cluster.info("commandstats", target_nodes=RedisCluster.PRIMARIES)
    return sum(node.get("cmdstat_cluster|slots", {}).get("calls", 0) for node in stats.values())


def test_a_cluster_url_makes_a_cluster_client_with_a_blocking_pool_per_node(cluster, cluster_url):
    client = redis_clients.connect(cluster_url, size=3)
    try:
        assert isinstance(client, RedisCluster)
        client.set(KEY, "é")
        assert client.get(KEY) == "é"  # str replies, as the single node's
        pools = [node.redis_connection.connection_pool for node in client.get_primaries()]
        assert len(pools) == 3
        for pool in pools:
            assert isinstance(pool, redis_lib.BlockingConnectionPool)
            assert pool.max_connections == 3
            kwargs = pool.connection_kwargs
            assert (kwargs["socket_timeout"], kwargs["socket_connect_timeout"]) == (
                redis_clients.SOCKET_TIMEOUT_S, redis_clients.SOCKET_TIMEOUT_S)
            assert kwargs["socket_keepalive"] is True
            assert kwargs["health_check_interval"] == redis_clients.HEALTH_CHECK_S
    finally:
        client.close()


def test_a_dry_pool_on_a_cluster_is_pool_exhausted_and_asks_for_no_slots(cluster, cluster_url,
                                                                         monkeypatch):
    """Under overload a node's pool runs dry: that is PoolExhausted (the visitor is told
    `unavailable` and sends again), not a failed node, whose handling would ask the cluster
    for its slots again for every caller that met it."""
    monkeypatch.setattr(redis_clients, "POOL_WAIT_S", 0.05)
    client = redis_clients.connect(cluster_url, size=1)
    try:
        client.set(KEY, "1")
        pool = client.get_node_from_key(KEY).redis_connection.connection_pool
        shared = Coalescer(client).wrap(client.register_script("return redis.call('GET', "
                                                               "KEYS[1])"))
        asked = slots_asked(cluster)
        held = pool.get_connection()
        try:
            with pytest.raises(PoolExhausted):
                client.get(KEY)
            for transaction in (False, True):
                with pytest.raises(PoolExhausted), client.pipeline(transaction=transaction) as pipe:
                    pipe.get(KEY)
                    pipe.execute()
            caller = gevent.spawn(shared, keys=[KEY])  # a shared round trip: its first batch
            caller.join(10)
            assert isinstance(caller.exception, PoolExhausted)
        finally:
            pool.release(held)
        assert slots_asked(cluster) == asked
        assert client.get(KEY) == "1"  # a free connection again: the next call goes through
    finally:
        client.close()


def test_readiness_asks_the_cluster_whether_it_serves_every_slot(cluster, cluster_url):
    client = redis_clients.connect(cluster_url)
    try:
        assert client.cluster_info()["cluster_state"] == "ok"
        assert redis_clients.unready_reason(client) is None
    finally:
        client.close()


def next_published(pubsub, wait_s: float = 5.0) -> dict:
    """The next published message, past any subscribe confirmation."""
    deadline = time.monotonic() + wait_s
    while (left := deadline - time.monotonic()) > 0:
        message = pubsub.get_message(timeout=left)
        if message is not None and message["type"] == "message":
            return message
    raise AssertionError("nothing published came within the wait")


def test_a_fresh_pubsub_for_the_hub_asks_where_the_slots_are_now_and_hears_every_publish(
        cluster, cluster_url):
    client = redis_clients.pubsub_client(cluster_url)
    make = redis_clients.pubsub_maker(client)
    try:
        first = make()
        first.subscribe("probe:topic")
        assert first.get_message(timeout=5)["type"] == "subscribe"
        asked = slots_asked(cluster)
        second = make()  # what a hub makes after its connection failed; it drops the first
        assert slots_asked(cluster) == asked + 1
        first.close()
        second.subscribe("probe:topic")
        assert second.get_message(timeout=5)["type"] == "subscribe"
        cluster.publish("probe:topic", "ding")
        assert next_published(second)["data"] == "ding"
        second.close()
    finally:
        client.close()
