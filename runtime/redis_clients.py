"""Make every Redis client of the service from REDIS_URL: one Redis, or a Redis Cluster.

The one place a client is made from the configuration: the worker's pool and its pub/sub
connections (runtime/wiring.py), the login limits' storage (web/auth.py), the `flask agents`
commands and the first agent of `make run` (routing/). `redis://`, `rediss://` and `unix://`
name one server; `redis+cluster://` and `rediss+cluster://` name nodes of a cluster
(runtime/config.py reads the form; docs/operating.md, "Redis Cluster").

Both kinds are made alike: replies decoded to str, the same socket timeouts, TCP keepalive and
health checks, and a blocking pool whose running dry is PoolExhausted, not Redis being away. On
a cluster that pool is per node. And both dial on first use, never as they are made: redis-py's
cluster client asks a node for the slots and the commands as it is built, so ours waits for
its first call (a worker boots, and `flask flows …` runs, with the cluster away).

Pub/sub is classic on one Redis and sharded on a cluster (`sharded_pubsub`): there the hub
subscribes on a connection to each master owning a channel it watches (`ClusterShards`;
docs/operating.md, "Redis Cluster").
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import redis as redis_lib
from redis.cluster import ClusterNode, ClusterPipeline, RedisCluster
from redis.crc import key_slot
from redis.exceptions import RedisClusterException, SlotNotCoveredError

from .config import ClusterURL, is_cluster_url, parse_cluster_url

POOL_SIZE = 64  # Redis connections a worker may hold (to each node of a cluster); a busy
POOL_WAIT_S = 5.0  # greenlet waits this long for one
SOCKET_TIMEOUT_S = 5.0
HEALTH_CHECK_S = 30
PUBSUB_POOL_SIZE = 2  # the worker's pub/sub connection (to each master), and a spare
MIN_CLUSTER_VERSION = (7, 0)  # sharded pub/sub (SSUBSCRIBE, SPUBLISH)

Client = redis_lib.Redis | RedisCluster


class PoolExhausted(redis_lib.RedisError):
    """Every Redis connection of the worker stayed busy for POOL_WAIT_S: the worker is overloaded.

    Not Redis being away: the socket that met it stays open and is told to send again
    (docs/operating.md, "Overload"). On purpose not a redis.ConnectionError: redis-py's cluster
    client takes a ConnectionError for a failed node, and asks the cluster for its slots again
    (CLUSTER SLOTS) and retries, for every caller that met it; under overload that would storm
    the cluster. A RedisError it passes on as it is.
    """


class ClusterAway(redis_lib.ConnectionError):
    """No node of the Redis Cluster answers, or a slot has no master: Redis is away.

    redis-py says so with a RedisClusterException, which is not a RedisError: every handler of
    ours that keeps a socket, a timer or the hub alive while Redis is away catches RedisError.
    """


class _Pool(redis_lib.BlockingConnectionPool):
    """A blocking pool whose running dry is told apart from Redis being unreachable."""

    def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().get_connection(*args, **kwargs)
        except redis_lib.ConnectionError as exc:
            # redis-py raises a plain ConnectionError with this text when its queue stays empty
            if str(exc) == "No connection available.":
                raise PoolExhausted(f"no Redis connection free within {POOL_WAIT_S:g} s") from exc
            raise


class _NodePool(_Pool):
    """The pool of one cluster node: the single node's settings that RedisCluster drops."""

    def __init__(self, **options: Any) -> None:
        # RedisCluster passes its nodes' pools only the options it knows, and
        # health_check_interval is not one of them.
        options.setdefault("health_check_interval", HEALTH_CHECK_S)
        super().__init__(**options)


def pool(url: str, size: int, **options: Any) -> redis_lib.BlockingConnectionPool:
    """Return a pool of `size` connections to the one Redis at `url` (not a cluster)."""
    # The default pool raises past 100 connections, at once under gevent: block and wait instead.
    # TCP keepalive notices a half-open connection (docs/stack.md, "Half-open Redis connections")
    if not url.startswith("unix://"):
        options.update(socket_keepalive=True, socket_connect_timeout=SOCKET_TIMEOUT_S)
    return _Pool.from_url(
        url, max_connections=size, timeout=POOL_WAIT_S, decode_responses=True,
        socket_timeout=SOCKET_TIMEOUT_S, health_check_interval=HEALTH_CHECK_S, **options)


def connect(url: str, size: int = POOL_SIZE, **options: Any) -> Client:
    """Return a client of the Redis, or the Redis Cluster, at `url`; it dials on first use.

    `options` go to every connection (`protocol=2`, say). On a cluster, `size` connections at
    most to each node.
    """
    if is_cluster_url(url):
        return LazyCluster(parse_cluster_url(url), size, **options)
    return redis_lib.Redis(connection_pool=pool(url, size, **options))


def pubsub_client(url: str) -> Client:
    """Return the client of the worker's pub/sub connections (each with a spare)."""
    # RESP2: under RESP3, redis-py 8 mangles a subscribed connection's PONG into a message
    # ({'type': 'P', ...}), so heartbeats looked unanswered and the hub kept reconnecting.
    # On a cluster the hub takes from it one connection to each master it subscribes on
    # (ClusterShards); pool and settings are each node's.
    return connect(url, PUBSUB_POOL_SIZE, protocol=2)


def sharded_pubsub(client: Client) -> bool:
    """Tell whether the service's pub/sub is sharded on this client: on a Redis Cluster.

    Decided once per process, from the configuration (runtime/wiring.py): a cluster must run
    Redis 7 or later (`unready_reason` says so otherwise), and there sharded pub/sub keeps
    each publish on the master of its channel instead of the whole cluster's bus. One Redis
    gains nothing from it, and the embedded one (Redis 6.2) has none.
    """
    return isinstance(client, RedisCluster)


def pubsub_maker(client: Client) -> Callable[[], redis_lib.client.PubSub]:
    """Return the classic hub's maker of pub/sub objects on `client` (subscribe confirmations
    kept).

    On a cluster a pubsub keeps the node it first picked; a fresh one picks again, so every
    call after the first asks the cluster where its slots are now (the pub/sub client runs no
    command that would), keeping the old map when no node answers.
    """
    made = 0

    def make() -> redis_lib.client.PubSub:
        nonlocal made
        if made and isinstance(client, RedisCluster):
            try:
                client.nodes_manager.initialize()
            except (redis_lib.RedisError, RedisClusterException, OSError):
                pass  # the new pubsub's subscribe fails as the old one did; the hub retries
        pubsub = client.pubsub(ignore_subscribe_messages=False)
        made += 1
        return pubsub

    return make


def unready_reason(client: Client) -> str | None:
    """Say why Redis cannot serve now (for /readyz), or None when it can.

    One Redis must answer a PING. A cluster must be usable, not only one of its nodes up: a
    node must say `cluster_state:ok` (every slot served by a master it can reach).
    """
    if not isinstance(client, RedisCluster):
        try:
            return None if client.ping() else "Redis does not answer"
        except (redis_lib.RedisError, OSError):
            return "Redis does not answer"
    try:
        info = client.cluster_info()
    except (redis_lib.RedisError, RedisClusterException, OSError):
        return "Redis Cluster does not answer"
    state = info.get("cluster_state") if isinstance(info, dict) else None
    if state != "ok":
        return f"Redis Cluster is not usable (cluster_state:{state})"
    return _too_old(client)


def _too_old(client: RedisCluster) -> str | None:
    """Say that the cluster's Redis has no sharded pub/sub, or None (asked until it answers
    a version that has: then once per client)."""
    if getattr(client, "_concierge_version_ok", False):
        return None
    try:
        version = client.get_default_node().redis_connection.info("server")["redis_version"]
        found = tuple(int(part) for part in str(version).split(".")[:2])
    except (redis_lib.RedisError, RedisClusterException, OSError, AttributeError, KeyError,
            ValueError):
        return None  # not known: the cluster answered CLUSTER INFO, so do not hold it up
    if found < MIN_CLUSTER_VERSION:
        return (f"Redis Cluster runs Redis {version}: sharded pub/sub needs "
                f"{'.'.join(map(str, MIN_CLUSTER_VERSION))} or later")
    client._concierge_version_ok = True
    return None


class ClusterShards:
    """Where the hub's sharded subscriptions go on a cluster (chat/hub.py's Shards): the master
    owning a channel's slot, and a pub/sub connection to it from that node's pool (of
    PUBSUB_POOL_SIZE).

    The map of slots is the pub/sub client's own, read when it is first used and again on
    `refresh` (the hub asks after a lost connection or a moved slot): it runs no command that
    would make redis-py read it again by itself.
    """

    def __init__(self, client: RedisCluster) -> None:
        self.client = client

    def node_of(self, channel: str) -> str:
        def find() -> str:
            nodes = self.client.nodes_manager  # the first use dials: ClusterAway if away
            return nodes.get_node_from_slot(self.client.keyslot(channel)).name

        return _as_redis_error(find)

    def pubsub(self, node: str) -> redis_lib.client.PubSub:
        known = self.client.get_node(node_name=node)
        if known is None:  # gone from the map since: a pool of its own, as any node's
            host, port = node.rsplit(":", 1)
            known = ClusterNode(host, int(port))
        pool = self.client.get_redis_connection(known).connection_pool
        return _ShardPubSub(pool, ignore_subscribe_messages=False)

    def refresh(self) -> None:
        try:
            # Not the default: that marks every connection of the node it asked to be made
            # again, the hub's subscriptions on it too (each would resubscribe and resync).
            self.client.nodes_manager.initialize(disconnect_startup_nodes_pools=False)
        except (redis_lib.RedisError, RedisClusterException, OSError):
            pass  # the old map stays; the hub tries again


class _ShardPubSub(redis_lib.client.PubSub):
    """A pub/sub connection to one master for its shard channels. redis-py subscribes them
    again itself when it dials again, in one SSUBSCRIBE: refused (CROSSSLOT) when they are
    of several slots, so here one per slot."""

    def _resubscribe_shard_channels(self) -> None:
        groups: dict[int, list[Any]] = {}
        for channel in self.shard_channels:
            groups.setdefault(key_slot(self.encoder.encode(channel)), []).append(channel)
        for group in groups.values():
            self.ssubscribe(*group)


class LazyCluster(RedisCluster):
    """redis-py's cluster client, made on its first use rather than as it is constructed.

    RedisCluster.__init__ dials a node at once (CLUSTER SLOTS, then COMMAND) and raises if none
    answers: a worker would fail to boot, and every `flask` command to build its app, while the
    cluster is away. So this one keeps its settings and runs RedisCluster.__init__ when an
    attribute that __init__ sets is first read (that is: on the first command, pipeline or
    pubsub). Until the cluster answers, each use raises redis.ConnectionError, as a single
    Redis that is away does, and the next one tries again.
    """

    def __init__(self, address: ClusterURL, size: int, **options: Any) -> None:
        self._lazy_address = address
        self._lazy_size = size
        self._lazy_options = options
        self._lazy_made = False
        self._lazy_maker: int | None = None  # the thread (greenlet) running __init__
        self._lazy_lock = threading.RLock()  # gevent's, in a patched worker
        # Script and ClusterPubSub read the encoder as they are made, before any command.
        self.encoder = redis_lib.connection.Encoder("utf-8", "strict", True)

    def __getattr__(self, name: str) -> Any:
        # Reached only for an attribute not set: before the client is made, one of __init__'s.
        if name.startswith(("_lazy", "__")) or self._lazy_made or \
                self._lazy_maker == threading.get_ident():
            raise AttributeError(name)
        self._lazy_make()
        return object.__getattribute__(self, name)

    def _lazy_make(self) -> None:
        with self._lazy_lock:
            if self._lazy_made:  # made by another greenlet while this one waited
                return
            address = self._lazy_address
            (host, port), others = address.nodes[0], address.nodes[1:]
            scheme = "rediss" if address.tls else "redis"
            self._lazy_maker = threading.get_ident()
            try:
                # A URL, not host= and port=: only then does RedisCluster make each node's pool
                # with connection_pool_class (ours, blocking, telling a dry pool apart).
                RedisCluster.__init__(
                    self, url=f"{scheme}://{_url_host(host)}:{port}",
                    startup_nodes=[ClusterNode(*node) for node in others],
                    username=address.username, password=address.password,
                    connection_pool_class=_NodePool, max_connections=self._lazy_size,
                    timeout=POOL_WAIT_S, decode_responses=True, socket_timeout=SOCKET_TIMEOUT_S,
                    socket_connect_timeout=SOCKET_TIMEOUT_S, socket_keepalive=True,
                    **self._lazy_options)
            except RedisClusterException as exc:  # not a RedisError: say it as Redis away
                # (a node that is not in cluster mode too: the log says so, sockets retry)
                raise ClusterAway(f"Redis Cluster does not answer ({exc})") from exc
            finally:
                self._lazy_maker = None
            self._lazy_made = True

    def close(self) -> None:
        if self._lazy_made:
            super().close()

    def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        return _as_redis_error(super().execute_command, *args, **kwargs)

    def pipeline(self, transaction: Any = None, shard_hint: Any = None) -> ClusterPipeline:
        pipe = super().pipeline(transaction, shard_hint)
        pipe.__class__ = _Pipeline  # the same object, its errors said as RedisErrors
        return pipe


def _as_redis_error(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Make `call`, saying "the cluster is away" as ClusterAway (a RedisError)."""
    try:
        return call(*args, **kwargs)
    except RedisClusterException as exc:
        if (away := _away(exc)) is None:
            raise
        raise away from exc


class _Pipeline(ClusterPipeline):
    """A cluster pipeline whose "cluster away" is a RedisError, as LazyCluster's commands'."""

    def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        return _as_redis_error(super().execute_command, *args, **kwargs)

    def execute(self, raise_on_error: bool = True) -> list[Any]:
        return _as_redis_error(super().execute, raise_on_error)


def _away(exc: RedisClusterException) -> ClusterAway | None:
    """Say a cluster that is away (no node answers, a slot without a master) as ClusterAway;
    None for any other RedisClusterException (a call's keys in several slots: a bug)."""
    cause = exc.__cause__ or exc.__context__
    if isinstance(exc, SlotNotCoveredError) or \
            isinstance(cause, (redis_lib.ConnectionError, redis_lib.TimeoutError, OSError)):
        return ClusterAway(f"Redis Cluster does not answer ({exc})")
    return None


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
