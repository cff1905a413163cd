"""A Redis Cluster of three masters for the tests of this folder (skipped before Redis 7)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from redis.cluster import RedisCluster as ClusterClient

from tests.support.redis_cluster import RedisCluster, cluster_supported


@pytest.fixture(scope="session")
def started_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    """Start a three-master cluster for the session."""
    if not cluster_supported():
        pytest.skip("Redis Cluster tests need redis-server 7 or later")
    with RedisCluster(tmp_path_factory.mktemp("cluster")) as cluster:
        yield cluster


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
