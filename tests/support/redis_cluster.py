"""Run a real, throw-away Redis Cluster of three masters on 127.0.0.1, for tests and benchmarks.

Three redis-servers in cluster mode (Redis 7 or later: `--cluster-port` names the bus port, as
a free port above 55535 has no room for the default port + 10000), the 16,384 slots split in
three ranges with CLUSTER ADDSLOTSRANGE, joined with CLUSTER MEET, and ready once every node
says `cluster_state:ok`. No replicas by default; `replicas=1` gives each master one (CLUSTER
REPLICATE), ready once each one's link to its master is up, for the failover tests: with a
short `node_timeout_ms` a replica takes over its dead master's slots within a few seconds
(`failover_done` tells when).
"""

from __future__ import annotations

from pathlib import Path

import redis
from redis.cluster import RedisCluster as ClusterClient

from tests.support.process import free_port, poll_until
from tests.support.redis_server import RedisServer, redis_version

SLOTS = 16_384
READY_TIMEOUT_S = 20
NODE_TIMEOUT_MS = 2000  # cluster-node-timeout: how long a node may be silent before it is failed
MIN_VERSION = (7, 0)  # --cluster-port, ADDSLOTSRANGE, sharded pub/sub


def cluster_supported() -> bool:
    """Tell whether the redis-server the tests run can form this cluster (Redis 7+)."""
    return redis_version()[:2] >= MIN_VERSION


class RedisCluster:
    """Three masters (and `replicas` replicas of each), each node with its files in a directory
    of its own under `directory`.

    `nodes` lists every node, the masters first (`masters`), then the replicas (`replicas`,
    `replicas_of(master)`). `appendonly=True` keeps an AOF on every node (as production runs).
    """

    def __init__(self, directory: Path, masters: int = 3, *, replicas: int = 0,
                 node_timeout_ms: int = NODE_TIMEOUT_MS, appendonly: bool = False) -> None:
        self.nodes: list[RedisServer] = []
        self.bus_ports: list[int] = []  # each node's cluster bus
        self.replicas_per_master = replicas
        for index in range(masters * (1 + replicas)):
            home = directory / f"node{index}"
            home.mkdir(parents=True, exist_ok=True)
            self.bus_ports.append(free_port())
            self.nodes.append(RedisServer(home, appendonly=appendonly, extra_args=(
                "--cluster-enabled", "yes",
                "--cluster-config-file", str(home / "nodes.conf"),
                "--cluster-port", str(self.bus_ports[-1]),
                "--cluster-node-timeout", str(node_timeout_ms),
            )))  # fmt: skip
        self.masters = self.nodes[:masters]
        self.replicas = self.nodes[masters:]
        first = self.nodes[0]
        self.url = f"redis://127.0.0.1:{first.port}/0"  # any node: the client finds the rest
        # REDIS_URL's form for the service (runtime/config.py), naming every node
        self.service_url = "redis+cluster://" + ",".join(f"127.0.0.1:{node.port}"
                                                         for node in self.nodes)

    def replicas_of(self, master: RedisServer) -> list[RedisServer]:
        """Return the replicas the cluster was started with for `master` (a node of `masters`)."""
        at = self.masters.index(master) * self.replicas_per_master
        return self.replicas[at:at + self.replicas_per_master]

    def start(self) -> str:
        """Start the nodes, give each master a third of the slots, join them, make each replica
        follow its master; return a node's URL."""
        clients: list[redis.Redis] = []
        try:
            for node in self.nodes:
                node.start()
            clients = [redis.Redis(port=node.port, socket_timeout=5) for node in self.nodes]
            masters = clients[:len(self.masters)]
            share = SLOTS // len(masters)
            for index, client in enumerate(masters):
                last = SLOTS - 1 if index == len(masters) - 1 else (index + 1) * share - 1
                client.execute_command("CLUSTER", "ADDSLOTSRANGE", index * share, last)
            for node, bus in zip(self.nodes[1:], self.bus_ports[1:], strict=True):
                clients[0].execute_command("CLUSTER", "MEET", "127.0.0.1", node.port, bus)
            everyone = len(clients)
            if self.replicas:
                # A replica can follow only a master it knows: every node first knows every node.
                self._await(clients, lambda client: _knows(client, everyone), "meet")
                for master, client in zip(self.masters, masters, strict=True):
                    master_id = _text(client.execute_command("CLUSTER", "MYID"))
                    for replica in self.replicas_of(master):
                        clients[self.nodes.index(replica)].execute_command(
                            "CLUSTER", "REPLICATE", master_id)
            self._await(clients, lambda client: _ok(client, everyone), "come up")
            self._await(clients[len(self.masters):], _linked, "link its replicas")
        except BaseException:
            self.stop()  # no node outlives a start that failed
            raise
        finally:
            for client in clients:
                client.close()
        return self.url

    def failover_done(self, dead: RedisServer) -> RedisServer | None:
        """Return the replica that took over `dead`'s slots once the cluster is whole again
        (each living node says `cluster_state:ok` and sees that replica as a master), else None.
        """
        living = [node for node in self.nodes if node is not dead and node.process is not None
                  and node.process.poll() is None]
        promoted = None
        for node in living:
            client = redis.Redis(port=node.port, socket_timeout=2, socket_connect_timeout=2)
            try:
                if "cluster_state:ok" not in _text(client.execute_command("CLUSTER", "INFO")):
                    return None
                flags = {int(line.split()[1].split(":")[1].split("@")[0]): line.split()[2]
                         for line in _text(client.execute_command("CLUSTER", "NODES")).splitlines()
                         if line.strip()}
            except (redis.RedisError, OSError):
                return None
            finally:
                client.close()
            for replica in self.replicas_of(dead):
                if "master" in flags.get(replica.port, "").split(","):
                    promoted = promoted or replica
                    break
            else:
                return None
        return promoted

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> RedisCluster:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @staticmethod
    def _await(clients: list[redis.Redis], condition, what: str) -> None:
        if not poll_until(lambda: all(condition(client) for client in clients), READY_TIMEOUT_S):
            states = [_text(client.execute_command("CLUSTER", "INFO")) for client in clients]
            raise RuntimeError(f"the cluster did not {what} within {READY_TIMEOUT_S} s: {states}")


def _text(reply: object) -> str:
    return reply.decode() if isinstance(reply, bytes) else str(reply)


def _knows(client: redis.Redis, nodes: int) -> bool:
    """Tell whether a node knows every other node."""
    return f"cluster_known_nodes:{nodes}\r" in _text(client.execute_command("CLUSTER", "INFO"))


def _linked(client: redis.Redis) -> bool:
    """Tell whether a replica's link to its master is up (it has had its first sync)."""
    return client.info("replication").get("master_link_status") == "up"


def _ok(client: redis.Redis, nodes: int) -> bool:
    """Tell whether a node serves every slot and knows every other node."""
    text = _text(client.execute_command("CLUSTER", "INFO"))
    return "cluster_state:ok" in text and f"cluster_known_nodes:{nodes}\r" in text


class WholeClusterClient(ClusterClient):
    """redis-py's cluster client for tests that look at the whole cluster as at one Redis.

    KEYS asks every master (redis-py's asks one node), and PUBSUB NUMSUB every node, summed
    (classic subscribers count only on the node they are connected to).
    """

    def keys(self, pattern: str = "*", **kwargs):
        kwargs.setdefault("target_nodes", self.PRIMARIES)
        return super().keys(pattern, **kwargs)

    def pubsub_numsub(self, *channels: str, **kwargs):
        kwargs.setdefault("target_nodes", self.ALL_NODES)
        return super().pubsub_numsub(*channels, **kwargs)
