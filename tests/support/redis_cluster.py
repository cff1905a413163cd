"""Run a real, throw-away Redis Cluster of three masters on 127.0.0.1, for tests and benchmarks.

Three redis-servers in cluster mode (Redis 7 or later: `--cluster-port` names the bus port, as
a free port above 55535 has no room for the default port + 10000), the 16,384 slots split in
three ranges with CLUSTER ADDSLOTSRANGE, joined with CLUSTER MEET, and ready once every node
says `cluster_state:ok`. No replicas: a failover test adds its own.
"""

from __future__ import annotations

from pathlib import Path

import redis

from tests.support.process import free_port, poll_until
from tests.support.redis_server import RedisServer, redis_version

SLOTS = 16_384
READY_TIMEOUT_S = 20
MIN_VERSION = (7, 0)  # --cluster-port, ADDSLOTSRANGE, sharded pub/sub


def cluster_supported() -> bool:
    """Tell whether the redis-server the tests run can form this cluster (Redis 7+)."""
    return redis_version()[:2] >= MIN_VERSION


class RedisCluster:
    """Three masters, each with its files in a directory of its own under `directory`."""

    def __init__(self, directory: Path, masters: int = 3) -> None:
        self.nodes: list[RedisServer] = []
        self.bus_ports: list[int] = []  # each node's cluster bus
        for index in range(masters):
            home = directory / f"node{index}"
            home.mkdir(parents=True, exist_ok=True)
            self.bus_ports.append(free_port())
            self.nodes.append(RedisServer(home, extra_args=(
                "--cluster-enabled", "yes",
                "--cluster-config-file", str(home / "nodes.conf"),
                "--cluster-port", str(self.bus_ports[-1]),
                "--cluster-node-timeout", "2000",
            )))  # fmt: skip
        first = self.nodes[0]
        self.url = f"redis://127.0.0.1:{first.port}/0"  # any node: the client finds the rest
        # REDIS_URL's form for the service (runtime/config.py), naming every node
        self.service_url = "redis+cluster://" + ",".join(f"127.0.0.1:{node.port}"
                                                         for node in self.nodes)

    def start(self) -> str:
        """Start the nodes, give each a third of the slots, join them; return a node's URL."""
        for node in self.nodes:
            node.start()
        clients = [redis.Redis(port=node.port, socket_timeout=5) for node in self.nodes]
        try:
            share = SLOTS // len(self.nodes)
            for index, client in enumerate(clients):
                last = SLOTS - 1 if index == len(clients) - 1 else (index + 1) * share - 1
                client.execute_command("CLUSTER", "ADDSLOTSRANGE", index * share, last)
            for node, bus in zip(self.nodes[1:], self.bus_ports[1:], strict=True):
                clients[0].execute_command("CLUSTER", "MEET", "127.0.0.1", node.port, bus)
            masters = len(clients)
            if not poll_until(lambda: all(_ok(client, masters) for client in clients),
                              READY_TIMEOUT_S):
                states = [client.execute_command("CLUSTER", "INFO") for client in clients]
                raise RuntimeError(f"the cluster did not come up within {READY_TIMEOUT_S} s: "
                                   f"{states}")
        finally:
            for client in clients:
                client.close()
        return self.url

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> RedisCluster:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _ok(client: redis.Redis, masters: int) -> bool:
    """Tell whether a node serves every slot and knows every other node."""
    info = client.execute_command("CLUSTER", "INFO")
    text = info.decode() if isinstance(info, bytes) else str(info)
    return "cluster_state:ok" in text and f"cluster_known_nodes:{masters}\r" in text
