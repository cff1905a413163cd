"""Fixtures for the whole suite: a real Redis, the app served by real gunicorn, visitor sockets
and the conversations as Redis stores them.

`--redis=cluster` runs the service's servers (live_server and the fixtures built on it) and the
`redis` fixture on a real three-master Redis Cluster the session starts (tests/support/
redis_cluster.py) instead of one redis-server; `make test` runs the tests marked `on_cluster` so
(`pytest -m on_cluster --redis=cluster`). Default: `--redis=single`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis import Redis
from redis.cluster import RedisCluster as ClusterClient

from tests.support.flows import MINIMAL_FLOW, shipped_flows, write_flows
from tests.support.gunicorn_server import GunicornServer
from tests.support.process import stop_all
from tests.support.redis_cluster import (
    RedisCluster,
    WholeClusterClient,
    cluster_supported,
)
from tests.support.redis_server import RedisServer
from tests.support.ws import VisitorSocket

IDENTITY_SECRET = "test-identity-secret"
SHOP_ORIGIN = "https://shop.example.com"
CONFIGURED_PREFIX = "acme:"
CONFIGURED_RETENTION_DAYS = 2
CONFIGURED = {  # every optional setting of the visitor socket away from its default
    "IDENTITY_SECRET": IDENTITY_SECRET,
    "ALLOWED_ORIGINS": SHOP_ORIGIN,
    "REDIS_PREFIX": CONFIGURED_PREFIX,
    "RETENTION_DAYS": str(CONFIGURED_RETENTION_DAYS),
}
SLOW_FRAME_RATE = 2  # frames a second (bursts of 4): a flood is limited long before it is read


REDIS_KINDS = ("single", "cluster")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--redis", choices=REDIS_KINDS, default="single",
        help="the Redis the service's test servers and the `redis` fixture use: one "
             "redis-server (single, the default) or a three-master Redis Cluster the session "
             "starts (cluster; run with `-m on_cluster`)")


def on_cluster(config: pytest.Config) -> bool:
    """Tell whether this run puts the service on a Redis Cluster (`--redis=cluster`)."""
    return config.getoption("--redis") == "cluster"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """With `--redis=cluster`, skip what is not marked `on_cluster`: it needs one Redis."""
    if not on_cluster(config):
        return
    one_redis = pytest.mark.skip(reason="not marked on_cluster: runs on one redis-server only")
    for item in items:
        if item.get_closest_marker("on_cluster") is None:
            item.add_marker(one_redis)


@pytest.fixture(scope="session")
def started_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    """Start a three-master Redis Cluster (no replicas) for the session (skipped before Redis 7).
    """
    if not cluster_supported():
        pytest.skip("Redis Cluster tests need redis-server 7 or later")
    with RedisCluster(tmp_path_factory.mktemp("cluster")) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def redis_server(request: pytest.FixtureRequest,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Yield the session's Redis as the service's REDIS_URL names it: one real redis-server
    started for the session (redis://), or with `--redis=cluster` the session's cluster
    (redis+cluster://, every node)."""
    if on_cluster(request.config):
        yield request.getfixturevalue("started_cluster").service_url
        return
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server.url


@pytest.fixture
def redis(request: pytest.FixtureRequest, redis_server: str) -> Iterator[Redis]:
    """Return a client (str replies) of the session's Redis, emptied before the test.

    On a cluster (`--redis=cluster`) a cluster client whose KEYS and PUBSUB NUMSUB ask every
    node (tests/support/redis_cluster.py), every master emptied.
    """
    if on_cluster(request.config):
        client = WholeClusterClient.from_url(request.getfixturevalue("started_cluster").url,
                                             decode_responses=True)
        client.flushall(target_nodes=WholeClusterClient.PRIMARIES)
    else:
        client = Redis.from_url(redis_server, decode_responses=True)
        client.flushall()
    yield client
    client.close()


@pytest.fixture(scope="session")
def minimal_flows_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return a FLOWS_DIR holding one valid flow, `default`, that greets and ends."""
    return write_flows(tmp_path_factory.mktemp("flows"), default=MINIMAL_FLOW)


@pytest.fixture(scope="session")
def shipped_flows_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return a FLOWS_DIR holding a copy of the shipped default flow and its tests."""
    return shipped_flows(tmp_path_factory.mktemp("shipped-flows"))


class LiveServers:
    """Start the app under gunicorn on demand; one server per distinct set of settings."""

    def __init__(self, redis_url: str, tmp_path_factory: pytest.TempPathFactory,
                 shipped: Path) -> None:
        self.redis_url = redis_url
        self.tmp_path_factory = tmp_path_factory
        self.shipped = shipped
        self.servers: dict[tuple, GunicornServer] = {}

    def __call__(self, flows_dir: str | Path | None = None, **env: str) -> str:
        """Return the base URL of gunicorn serving the app with `flows_dir` and `env` settings."""
        env = {"REDIS_URL": self.redis_url, "FLOWS_DIR": str(flows_dir or self.shipped), **env}
        key = tuple(sorted(env.items()))
        if key not in self.servers:
            server = GunicornServer(self.tmp_path_factory.mktemp("gunicorn"), env)
            server.start()
            self.servers[key] = server
        return self.servers[key].url

    def stderr(self, url: str) -> str:
        """Return what the server at `url` has written to stderr so far."""
        return next(s for s in self.servers.values() if s.url == url).stderr()

    def stop_all(self) -> None:
        """Stop every server at once (one by one, the session's ~20 took 23 s)."""
        stop_all([server.process for server in self.servers.values()
                  if server.process is not None])


@pytest.fixture(scope="session")
def live_server(
    redis_server: str, tmp_path_factory: pytest.TempPathFactory, shipped_flows_dir: Path
) -> Iterator[LiveServers]:
    """Yield a factory: `live_server(flows_dir=None, **env) -> base URL` of the app under gunicorn.

    Each server runs 2 gevent workers on 127.0.0.1 with REDIS_URL set to the session's Redis (the
    cluster, with `--redis=cluster`) and FLOWS_DIR to `flows_dir` (default: a copy of the
    shipped default flow); it is started on first use and shared by every later call with the
    same settings, and stopped at the end of the session.
    """
    servers = LiveServers(redis_server, tmp_path_factory, shipped_flows_dir)
    yield servers
    servers.stop_all()


@pytest.fixture(scope="session")
def server(live_server) -> str:
    """Return the base URL of the app with default settings and the shipped flows."""
    return live_server()


@pytest.fixture(scope="session")
def second_instance(live_server, server) -> str:
    """Return a second instance with the same settings: another gunicorn on the same Redis."""
    # The marker only makes the factory start a server of its own; the app ignores it.
    return live_server(CONCIERGE_TEST_INSTANCE="2")


@pytest.fixture(scope="session")
def configured_server(live_server) -> str:
    """Return the app with identity checks, a listed origin, its own key prefix and retention."""
    return live_server(**CONFIGURED)


@pytest.fixture(scope="session")
def slow_rate_server(live_server) -> str:
    """Return the app allowing SLOW_FRAME_RATE frames a second per socket."""
    return live_server(FRAME_RATE=str(SLOW_FRAME_RATE))


@pytest.fixture
def open_visitor() -> Iterator[Callable[..., VisitorSocket]]:
    """Yield a factory, `open_visitor(url, headers=None)`, of sockets closed after the test."""
    sockets: list[VisitorSocket] = []

    def connect(url: str, headers: dict[str, str] | None = None) -> VisitorSocket:
        sockets.append(VisitorSocket(url, headers))
        return sockets[-1]

    yield connect
    for socket in sockets:
        socket.close()


class Store:
    """Read conversations as Redis holds them (the layout docs/protocol.md gives operators).

    `redis` is a client of one Redis or of a cluster: a conversation's keys share its hash tag,
    so each read goes to the one master holding them. On a cluster the service's pub/sub is
    sharded, each conversation's channel in the slot of its keys (chat/hub.py): `channel` names
    it so, and `publish` rings it as the service does.
    """

    def __init__(self, redis: Redis | ClusterClient, prefix: str = "concierge:") -> None:
        self.redis = redis
        self.prefix = prefix
        self.sharded = isinstance(redis, ClusterClient)

    def record_key(self, cid: str) -> str:
        return f"{self.prefix}conv:{{{cid}}}"

    def keys(self, cid: str) -> list[str]:
        """Name the conversation's record, log and client-id keys."""
        record = self.record_key(cid)
        return [record, f"{record}:log", f"{record}:ids"]

    def lock_key(self, cid: str) -> str:
        """Name the bot's turn lock of the conversation."""
        return f"{self.record_key(cid)}:turn"

    def channel(self, cid: str) -> str:
        """Name the conversation's pub/sub doorbell."""
        return f"{self.prefix}conv:{{{cid}}}" if self.sharded else f"{self.prefix}conv:{cid}"

    def publish(self, cid: str, data: str, client: Any = None) -> Any:
        """Ring the conversation's doorbell with `data` (SPUBLISH on a cluster), through
        `client` (a pipeline, say) or the store's client."""
        client = client if client is not None else self.redis
        channel = self.channel(cid)
        return client.spublish(channel, data) if self.sharded else client.publish(channel, data)

    def record(self, cid: str) -> dict[str, str]:
        return self.redis.hgetall(self.record_key(cid))

    def field(self, cid: str, name: str) -> Any:
        """Return a JSON field of the record, decoded."""
        raw = self.redis.hget(self.record_key(cid), name)
        return None if raw is None else json.loads(raw)

    def log(self, cid: str) -> list[dict[str, Any]]:
        """Return every stored message, checking that `seq` counts 1, 2, 3 … without gaps."""
        messages = [json.loads(raw) for raw in self.redis.lrange(f"{self.record_key(cid)}:log",
                                                                  0, -1)]
        assert [m["seq"] for m in messages] == list(range(1, len(messages) + 1)), messages
        return messages


@pytest.fixture
def store(redis) -> Store:
    """Return the stored conversations of the servers with the default key prefix."""
    return Store(redis)


@pytest.fixture
def configured_store(redis) -> Store:
    return Store(redis, CONFIGURED_PREFIX)
