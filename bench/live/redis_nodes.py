"""The Redis a benchmark runs the service on: one redis-server, or a Redis Cluster of three
masters (`--redis single|cluster`), through the tests' harness (tests/support/redis_server.py,
tests/support/redis_cluster.py): free loopback ports, no persistence, each node in a session of
its own (a Ctrl-C is the benchmark's to handle; it stops them itself).

Whatever the benchmark does to Redis itself goes through here, node by node where a cluster
needs it: its client (runtime/redis_clients.py's, as the service makes it from REDIS_URL), the
commands each node ran (INFO commandstats, summed), MONITOR on every node, and each node's
redis-server process for the CPU meters.
"""

from __future__ import annotations

import collections
from pathlib import Path

import redis as redis_lib

from bench.live.meters import proc_rss_kb, redis_commands
from runtime import redis_clients
from tests.support.redis_cluster import RedisCluster
from tests.support.redis_server import RedisServer

KINDS = ("single", "cluster")
MASTERS = 3
ROUTING_TAG = "{routing}"  # routing's shared keys all carry it: one master holds all of routing


class BenchRedis:
    """One redis-server (`single`) or three masters (`cluster`), in `directory`."""

    def __init__(self, directory: Path, kind: str = "single") -> None:
        if kind not in KINDS:
            raise ValueError(f"--redis takes {' or '.join(KINDS)}, not {kind!r}")
        self.kind = kind
        self.cluster: RedisCluster | None = None
        if kind == "cluster":
            self.cluster = RedisCluster(directory / "redis-cluster", masters=MASTERS)
            self.nodes: list[RedisServer] = self.cluster.nodes
            for node in self.nodes:  # the fixture's nodes share the caller's session: not ours
                node.own_session = True
            self.service_url = self.cluster.service_url  # redis+cluster://, every node
        else:
            self.nodes = [RedisServer(directory, own_session=True)]
            self.service_url = self.nodes[0].url

    @property
    def is_cluster(self) -> bool:
        return self.cluster is not None

    @property
    def ports(self) -> list[int]:
        return [node.port for node in self.nodes]

    @property
    def pids(self) -> list[int]:
        return [node.process.pid for node in self.nodes]

    @property
    def node_names(self) -> list[str]:
        """One name per node, for the meters: `redis:<port>`."""
        return [f"redis:{port}" for port in self.ports]

    def node_urls(self) -> list[str]:
        """A plain redis:// URL per node (a client of that node alone)."""
        return [node.url for node in self.nodes]

    def describe(self) -> str:
        ports = ", ".join(f":{port}" for port in self.ports)
        if self.is_cluster:
            return (f"Redis Cluster, {len(self.nodes)} masters ({ports}), no replicas, no "
                    f"persistence; REDIS_URL={self.service_url}")
        return f"one redis-server ({ports}), no persistence"

    def start(self) -> None:
        if self.cluster is not None:
            self.cluster.start()
        else:
            self.nodes[0].start()

    def stop(self) -> None:
        """Stop every node; a failure to stop one does not skip the rest."""
        for node in self.nodes:
            try:
                node.stop()
            except Exception as exc:  # noqa: BLE001 - stop the others whatever happens
                print(f"stopping redis-server :{node.port} failed: {exc}", flush=True)

    def __enter__(self) -> BenchRedis:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def client(self, size: int = 8) -> redis_clients.Client:
        """A synchronous client (str replies) made as the service makes its own from
        REDIS_URL: redis-py's Redis, or its RedisCluster (LazyCluster, per-node pools)."""
        return redis_clients.connect(self.service_url, size)

    def commands(self) -> collections.Counter:
        """Calls per command so far, every node's INFO commandstats summed."""
        total: collections.Counter = collections.Counter()
        for port in self.ports:
            total.update(redis_commands(port))
        return total

    def subscribed_connections(self) -> int:
        """Connections subscribed to a channel or more, over every node (CLIENT LIST): one per
        worker whose hub runs and whose sockets watch something."""
        count = 0
        for port in self.ports:
            client = redis_lib.Redis(port=port, socket_timeout=5)
            try:
                count += sum(1 for entry in client.client_list()
                             if int(entry.get("sub", 0)) + int(entry.get("psub", 0)) > 0)
            finally:
                client.close()
        return count

    def rss_kb(self) -> int:
        return sum(proc_rss_kb(pid) for pid in self.pids)

    def nodes_of(self, keys: list[str]) -> list[int]:
        """The index (in `nodes`) of the master that holds each key's slot (0 on one server)."""
        if not self.is_cluster:
            return [0] * len(keys)
        client = self.client(2)
        try:
            return [self.ports.index(int(client.get_node_from_key(key).port)) for key in keys]
        finally:
            client.close()

    def routing_node(self) -> int:
        """The node that carries routing: the master of the `{routing}` slot."""
        return self.nodes_of([ROUTING_TAG])[0]
