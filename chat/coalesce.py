"""Shared round trips: the calls that many greenlets make at once go to Redis together.

Under gevent a Redis round trip costs a worker far more than the command itself: the write,
the wait, the read and the switches around them, about a quarter of a millisecond of CPU on a
2-core machine, where the same script sent a hundred at a time in one pipeline costs a tenth
of that (docs/operating.md, "Shared round trips"). So a hot script call (a visitor's or an
agent's message being stored) does not take a connection of its own: it joins a queue, and
the worker's sender, a greenlet of its own, sends everything queued in one write and reads
the replies back to their callers. It is woken by the first call of a burst and runs after the
greenlets woken with that call, so their calls join the same batch; while one batch is out,
the next one gathers, so the busier the worker, the bigger the batches and the cheaper each
call; a lone call costs about what it did. The sender belongs to no caller: a caller killed
while it waits (its socket went) leaves the batch whole. Only short calls come here (a
script storing a message or a turn, a ZADD): a batch is as slow as its slowest call.

The sender keeps one connection of the pool for itself (on a cluster, each node's sender one
to its node): only one batch of a sender is out at a time, and taking a connection from the
pool and giving it back for every batch cost as much as a small batch itself. A connection
that fails is dialled again by the next batch.

A caller may send several calls at once (`many`): they go in the same batch, and it gets
each one's reply or error.

With `wait_replicas` (REDIS_WAIT_REPLICAS), each write of a batch ends with Redis's `WAIT`:
its calls' callers hear back only once that many replicas of the node have everything the
batch wrote, or `wait_ms` has passed (logged, once a minute: the replicas are behind or gone,
and the calls are answered all the same, as the master took them). One WAIT covers the whole
batch, so it costs a round trip's wait, not a command per message (docs/operating.md,
"Failover and what an ack means").

What each caller sees is what `Script(keys=…, args=…)` gives: the reply, or the exception
of its own call (an error reply fails that call alone). A connection that fails mid-batch has
its calls that got no reply sent once more, on a fresh connection; if that fails too, each of
them fails with that error. Sent again, a call may run twice, so every call sent here must be
safe to repeat: a message is stored once per client id, a bot turn's store once per store id
(it returns the first run's result), and a ZADD sets what it set. On a cluster each node is on
its own: a node that fails leaves the other nodes' replies to be read.

On Redis Cluster each node has a queue and a sender of its own: a call joins the queue of
the node its keys live on (a call's keys share one slot: docs/operating.md, "Redis Cluster"),
so a slow node (its WAIT for a replica that is gone) holds up only the calls it holds. Should
the map have changed since a call was queued, its batch goes to the nodes its calls' keys live
on now: one write to each, then the replies read back from each. A call a node answers with
MOVED (its slot moved) is sent again once,
after the client has learnt the cluster's slots afresh; ASK, which only a resharding in
progress answers, fails that call as an error reply does.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import gevent
import gevent.event
import redis as redis_lib
from redis.cluster import RedisCluster
from redis.commands.core import Script
from redis.exceptions import MovedError, RedisClusterException

from . import resp

log = logging.getLogger("concierge.coalesce")

MAX_BATCH = 256  # calls sent in one write; a longer queue goes in the next batch
WAIT_WARN_EVERY_S = 60.0


class _Call:
    """One queued script call and where its reply goes."""

    __slots__ = ("script", "command", "packed", "key", "done", "pending", "reply", "error")

    def __init__(self, script: Script | None, command: tuple[Any, ...], key: Any) -> None:
        self.script = script  # for EVALSHA: loaded again should Redis have lost it
        self.command = command
        # Packed here, in the caller: an argument that cannot be sent fails its own call alone
        self.packed = resp.pack(command)
        self.key = key  # the first key: on a cluster, the node the call goes to
        self.done = gevent.event.Event()  # set once its batch is over: a reply, or an error
        self.pending = True  # no reply read yet
        self.reply: Any = None
        self.error: BaseException | None = None


class Coalescer:
    """Send the script calls queued by a worker's greenlets in shared round trips."""

    def __init__(self, redis: redis_lib.Redis | RedisCluster, wait_replicas: int = 0,
                 wait_ms: int = 100) -> None:
        self.redis = redis
        self.wait_replicas = wait_replicas
        self.wait_ms = wait_ms
        self._wait_warned = 0.0  # when the last "replicas behind" warning was logged
        self._cluster = isinstance(redis, RedisCluster)
        # One queue and one sender per cluster node (one in all on a single Redis): a node that
        # is slow to answer (its WAIT for a replica that is gone) holds up only its own calls.
        self._queues: dict[str, list[_Call]] = {}  # node, as the call was queued -> its calls
        # node -> its sender and the bell that wakes it: a sender waits for calls between
        # bursts rather than ending (a greenlet made afresh for each burst cost ~30 µs of CPU)
        self._senders: dict[str, tuple[gevent.Greenlet, gevent.event.Event]] = {}
        # (sender's node, node sent to) -> (pool, connection): each sender has its own, also to
        # a node its calls moved to meanwhile
        self._connections: dict[tuple[str, str], tuple[Any, Any]] = {}
        self.batches = 0  # writes sent (one per node a batch goes to): fewer than calls

    def wrap(self, script: Script) -> _Shared:
        """Return `script` as a callable that shares round trips, called like the Script."""
        return _Shared(self, script)

    def call(self, script: Script, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """Call `script` as Script(keys=…, args=…) would: its reply, or raise its error."""
        entry = _Call(script, ("EVALSHA", script.sha, len(keys), *keys, *args), keys[0])
        self._wait([entry])
        if entry.error is not None:
            raise entry.error
        return entry.reply

    def many(self, calls: Sequence[tuple[Script | None, tuple[Any, ...], Any]]) -> list[Any]:
        """Send calls (script or None, command, first key) in one batch; each one's reply, or
        the exception of a call that failed, in order."""
        entries = [_Call(*call) for call in calls]
        self._wait(entries)
        return [entry.reply if entry.error is None else entry.error for entry in entries]

    def _wait(self, entries: list[_Call]) -> None:
        lanes = [self._lane(entry) for entry in entries]
        for lane, entry in zip(lanes, entries, strict=True):
            self._queues.setdefault(lane, []).append(entry)
            self._ring(lane)
        try:
            for entry in entries:
                entry.done.wait()
        except BaseException:  # killed while waiting: a call not sent yet is not sent at all
            for lane, entry in zip(lanes, entries, strict=True):
                queue = self._queues.get(lane, ())
                if entry in queue:
                    queue.remove(entry)
            raise

    def _lane(self, entry: _Call) -> str:
        """The node whose sender sends `entry` ("" on a single Redis, or while the cluster's
        map is unknown: the send then finds the node, or fails as any call would)."""
        if not self._cluster:
            return ""
        try:
            return self.redis.nodes_manager.get_node_from_slot(
                self.redis.keyslot(entry.key)).name
        except (redis_lib.RedisError, RedisClusterException, OSError, AttributeError):
            return ""

    def _ring(self, lane: str) -> None:
        """Wake the lane's sender, made on the lane's first call (or after it was killed).
        Neither setting its bell nor spawning it switches: it runs once the caller waits."""
        sender = self._senders.get(lane)
        if sender is None or sender[0].dead:
            bell = gevent.event.Event()
            sender = self._senders[lane] = (gevent.spawn(self._sender, lane, bell), bell)
        sender[1].set()

    def _sender(self, lane: str, bell: gevent.event.Event) -> None:
        """Send the batches of one node's queue whenever it has calls (runs for good)."""
        queue = self._queues.setdefault(lane, [])
        try:
            while True:
                bell.wait()
                bell.clear()
                while queue:
                    batch = queue[:MAX_BATCH]
                    del queue[:MAX_BATCH]
                    self._round_trip(batch, lane)
        finally:  # the sender itself was killed (a worker stopping): the next call, or the
            # calls still queued, start another
            if self._senders.get(lane, (None, None))[1] is bell:
                del self._senders[lane]
            if queue:
                self._ring(lane)

    def _round_trip(self, batch: list[_Call], lane: str = "") -> None:
        """Send one batch and hand every call its reply or its error."""
        try:
            try:
                self._send(batch, lane)
            except _Stale:
                # A connection that went stale (Redis restarted, a proxy dropped it) fails its
                # first use: once more on a fresh one, as redis-py retries a call of its own
                # (on a cluster, after asking where the slots are now: a master may have failed)
                if self._cluster:
                    self._learn_slots()
                self._send([entry for entry in batch if entry.pending], lane)
            unknown = [entry for entry in batch
                       if isinstance(entry.error, redis_lib.exceptions.NoScriptError)]
            if unknown:
                # Redis lost its scripts (a restart, SCRIPT FLUSH) or never had them: load each
                # once and send its calls again, as redis-py does for a call of its own.
                for script in {id(entry.script): entry.script for entry in unknown}.values():
                    self.redis.script_load(script.script)
                for entry in unknown:
                    entry.error, entry.pending = None, True
                self._send(unknown, lane)
        except BaseException as exc:  # noqa: BLE001 - told to every call still waiting
            if isinstance(exc, _Stale):
                exc = exc.__cause__
            for entry in batch:
                if entry.pending:
                    entry.error = exc if isinstance(exc, redis_lib.RedisError) else \
                        redis_lib.ConnectionError(f"the shared round trip failed: {exc!r}")
            if not isinstance(exc, (redis_lib.RedisError, OSError)):
                raise
        finally:
            for entry in batch:  # only now: a call is over once its batch is
                entry.done.set()

    def _send(self, batch: list[_Call], lane: str = "", follow_moves: bool = True) -> None:
        """Send a batch (one write to each node it goes to) and read its replies into its calls.

        A node whose pool is dry fails its own calls with that error. Raises _Stale (from the
        first connection's error) once the other nodes' replies are read, if a connection
        failed: its calls, still pending, are the ones to send again.
        """
        if not batch:
            return
        groups = [("", self.redis.connection_pool, batch)] if not self._cluster else \
            self._by_node(batch)
        # Each node on its own: one that fails leaves the others' replies to be read (their
        # calls ran), and only its own calls are sent again.
        sent: list[tuple[Any, list[_Call]]] = []
        lost: BaseException | None = None  # the first connection error met
        try:
            for node, pool, calls in groups:
                try:
                    connection = self._connection(lane, node, pool)
                except (redis_lib.ConnectionError, OSError) as exc:
                    lost = lost or exc
                    continue
                except redis_lib.RedisError as exc:  # the pool ran dry: overload, not sent
                    for entry in calls:
                        entry.error, entry.pending = exc, False
                    continue
                packed = [entry.packed for entry in calls]
                if self.wait_replicas:
                    packed.append(resp.pack(("WAIT", self.wait_replicas, self.wait_ms)))
                try:
                    connection.send_packed_command([b"".join(packed)])  # one write
                except (redis_lib.ConnectionError, OSError) as exc:
                    connection.disconnect()
                    lost = lost or exc
                    continue
                self.batches += 1
                sent.append((connection, calls))
            while sent:
                connection, calls = sent.pop(0)
                try:
                    self._read(connection, calls)
                except (redis_lib.ConnectionError, OSError) as exc:
                    connection.disconnect()  # replies would be out of step with their calls
                    lost = lost or exc
        except BaseException:
            for connection, _calls in sent:
                connection.disconnect()
            raise
        if lost is not None:
            raise _Stale() from lost
        moved = [entry for entry in batch if isinstance(entry.error, MovedError)]
        if moved and follow_moves:  # a slot moved: learn where the slots are now, send again
            self._learn_slots()
            for entry in moved:
                entry.error, entry.pending = None, True
            self._send(moved, lane, follow_moves=False)  # a second MOVED stays that call's error

    def _read(self, connection: Any, calls: list[_Call]) -> None:
        """Read the replies of `calls` (and of their WAIT) from `connection`; a call whose
        reply came before a failure keeps it (only the others are sent again)."""
        reached: Any = None

        def take(index: int, reply: Any) -> None:
            nonlocal reached
            if index == len(calls):  # the WAIT's: how many replicas have the batch
                reached = reply
                return
            entry = calls[index]
            if isinstance(reply, BaseException):  # that call's own error reply
                entry.error = reply
            else:
                entry.reply = reply
            entry.pending = False

        resp.read_replies(connection, len(calls) + (1 if self.wait_replicas else 0), take)
        if self.wait_replicas:  # an error reply (a replica, say: WAIT refused) is the reached
            self._waited(reached, len(calls))

    def _waited(self, reached: Any, calls: int) -> None:
        """Note what a batch's WAIT said: how many replicas have its writes."""
        if isinstance(reached, int) and reached >= self.wait_replicas:
            return
        now = time.monotonic()
        if now - self._wait_warned >= WAIT_WARN_EVERY_S:
            self._wait_warned = now
            log.warning("%d call(s) acked with %s of %d replica(s) after %d ms: replicas are "
                        "behind or gone (REDIS_WAIT_REPLICAS)", calls, reached,
                        self.wait_replicas, self.wait_ms)

    def _connection(self, lane: str, node: str, pool: Any) -> Any:
        """The `lane` sender's own connection to `node`, taken from its pool the first time; a
        disconnected one dials again as it sends. Raises the pool's error if none is free."""
        held = self._connections.get((lane, node))
        if held is not None and held[0] is pool:
            return held[1]
        if held is not None:  # the node's client was made afresh (the cluster's map changed)
            held[0].release(held[1])
        connection = pool.get_connection()
        self._connections[(lane, node)] = (pool, connection)
        return connection

    def _learn_slots(self) -> None:
        """Ask the cluster where its slots are now; with no node answering, keep the old map
        (the calls sent again then fail with their connection's error, as any would)."""
        try:
            self.redis.nodes_manager.initialize()
        except (redis_lib.RedisError, RedisClusterException, OSError) as exc:
            log.warning("could not learn the cluster's slots (%s)", exc)

    def _by_node(self, batch: list[_Call]) -> list[tuple[str, Any, list[_Call]]]:
        """Split a batch by the cluster node that holds each call's keys: (node, pool, calls)."""
        groups: dict[str, tuple[str, Any, list[_Call]]] = {}
        for entry in batch:  # a call's keys share a slot
            node = self.redis.nodes_manager.get_node_from_slot(self.redis.keyslot(entry.key))
            groups.setdefault(node.name, (node.name, node.redis_connection.connection_pool,
                                          []))[2].append(entry)
        return list(groups.values())


class _Stale(Exception):
    """The connection of a batch failed; its cause is the connection's error."""


class _Shared:
    """A script whose calls share round trips with the worker's other calls."""

    __slots__ = ("coalescer", "script")

    def __init__(self, coalescer: Coalescer, script: Script) -> None:
        self.coalescer = coalescer
        self.script = script

    def __call__(self, keys: Sequence[Any] = (), args: Sequence[Any] = ()) -> Any:
        return self.coalescer.call(self.script, keys, args)
