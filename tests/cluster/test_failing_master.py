"""A master of the cluster dies: the shared round trips to the other masters go on (a cluster of
its own, since the test kills one of its nodes)."""

from __future__ import annotations

import os
import signal

import gevent
import pytest
import redis as redis_lib
from redis.cluster import RedisCluster as ClusterClient

from chat.coalesce import Coalescer
from tests.support.redis_cluster import RedisCluster, cluster_supported


@pytest.fixture
def doomed_cluster(tmp_path):
    if not cluster_supported():
        pytest.skip("Redis Cluster tests need redis-server 7 or later")
    with RedisCluster(tmp_path) as cluster:
        yield cluster


def test_a_dead_master_fails_only_its_own_calls_of_a_batch(doomed_cluster):
    client = ClusterClient.from_url(doomed_cluster.url, decode_responses=True)
    coalescer = Coalescer(client)
    # two keys on two masters, and the master of the second one
    keys = [f"k{n}" for n in range(100)]
    nodes = {key: client.nodes_manager.get_node_from_slot(client.keyslot(key)).port
             for key in keys}
    alive, doomed = keys[0], next(key for key in keys if nodes[key] != nodes[keys[0]])
    warm = gevent.spawn(coalescer.many, [(None, ("SET", alive, "0"), alive),
                                         (None, ("SET", doomed, "0"), doomed)])
    warm.join(timeout=10)
    assert warm.value == ["OK", "OK"]
    victim = next(node for node in doomed_cluster.nodes if node.port == nodes[doomed])
    os.kill(victim.process.pid, signal.SIGKILL)
    victim.process.wait(timeout=10)

    # the dead node's calls first: its failure must not cost the others their replies
    batch = gevent.spawn(coalescer.many, [(None, ("INCR", doomed), doomed),
                                          (None, ("INCR", alive), alive)])
    batch.join(timeout=30)

    failed, survived = batch.value
    assert survived == 1  # ran once: its node's reply was read, not sent again
    assert isinstance(failed, redis_lib.ConnectionError)
    assert client.get(alive) == "1"
    client.close()
