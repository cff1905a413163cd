"""Redis Clusters for the tests of this folder (skipped before Redis 7): the session's three
masters (`started_cluster`, tests/conftest.py), and three masters with a replica each
(`replicated_cluster`) for the failover tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from redis.cluster import RedisCluster as ClusterClient

from tests.support.redis_cluster import RedisCluster, cluster_supported

FAILOVER_NODE_TIMEOUT_MS = 1000  # a dead master is failed, and its replica promoted, in 1-3 s


@pytest.fixture(scope="session")
def redis_cluster(started_cluster: RedisCluster) -> str:
    """Return a node's URL (redis://), which redis-py's cluster client takes."""
    return started_cluster.url


@pytest.fixture(scope="session")
def cluster_url(started_cluster: RedisCluster) -> str:
    """Return the cluster as the service's REDIS_URL names it: redis+cluster://, every node."""
    return started_cluster.service_url


@pytest.fixture
def cluster(redis_cluster: str) -> Iterator[ClusterClient]:
    """Return a cluster client (str replies), every master emptied before the test."""
    client = ClusterClient.from_url(redis_cluster, decode_responses=True)
    client.flushall(target_nodes=ClusterClient.PRIMARIES)
    yield client
    client.close()


@pytest.fixture(scope="session")
def replicated_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    """Start three masters with one replica each (AOF on, a node timeout of 1 s) for the session.

    A test that kills a master leaves the cluster changed (its replica the master now): the
    session's other users of it must not mind, or get a cluster of their own.
    """
    if not cluster_supported():
        pytest.skip("Redis Cluster tests need redis-server 7 or later")
    with RedisCluster(tmp_path_factory.mktemp("replicated-cluster"), replicas=1,
                      node_timeout_ms=FAILOVER_NODE_TIMEOUT_MS, appendonly=True) as cluster:
        yield cluster
