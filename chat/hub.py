"""The worker's doorbell: pub/sub connections and their dispatchers, by topic.

A topic is a string naming what frames are about: a conversation's is
`conv:<cid>` (Conversations.topic), and agents' and queues' come with
routing. `Channels` names a topic's channel and publishes on it, for every
publisher (the Lua scripts get their channels from it too) and for the hub.
Sockets on any worker of any instance stay in step because every stored frame
is published on its topic's channel (a bot turn's messages together, one a
line). Pub/sub only rings the bell: when a subscription is (re)made, each
subscriber of the topic is asked to resync (read the log for what it may have
missed), so a Redis restart or a lost publish loses nothing.

On one Redis, pub/sub is classic (`Hub`): one connection and one dispatcher
per worker. On a Redis Cluster it is sharded (`ShardedHub`): a channel lives
on the master that owns its hash slot, so a worker holds one connection, each
with its dispatcher, to every master owning a channel it watches, and follows
the slots when they move (docs/operating.md, "Redis Cluster").

A subscriber is any object with `deliver(frame, raw)`, `resync_later()` and
`transport`, the socket it delivers on (web/feeds.py's Feed is one). One socket
may watch many topics; `forget(socket)` ends all of its subscriptions, and
`register(socket)` lists it for the 1001 of a shutdown.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import gevent
import gevent.lock
import redis as redis_lib
from redis.crc import key_slot

from . import frames
from .pushes import Push, PushReader

log = logging.getLogger("concierge.hub")

HEARTBEAT_S = 10.0  # PING on the subscription: a half-open connection is noticed in 30 s
MISSED_HEARTBEATS = 3
RECONNECT_MAX_S = 5.0  # back-off cap while Redis is away
LIVE_READ_S = 2.5  # a connection read without a failure this lately is live (it is read every 1 s)
# Replies that prove the subscription lives. An unsubscribed connection's PONG is a simple
# string (chat/pushes.py's "simple"): that one does not count.
LIVE_REPLIES = frozenset({"message", "subscribe", "unsubscribe", "pong"})
SHARD_LIVE_REPLIES = frozenset({"smessage", "ssubscribe", "sunsubscribe", "pong"})
# What a pub/sub command meets while its connection is being made again by another greenlet (the
# dispatcher, after a lost connection): redis-py's own errors, the socket's, and ValueError from
# the reader's buffer closed under it ("I/O operation on closed file"). Each is retried as a lost
# connection is: the dispatcher subscribes every watched channel again.
CONNECTION_TROUBLE = (redis_lib.RedisError, OSError, ValueError)
CONVERSATION_KIND = "conv"  # a conversation's topic is `conv:<cid>` (chat/conversations.py)
ROUTING_TAG = "{routing}"  # the hash tag of routing's keys (routing/board.py)


@dataclass(frozen=True)
class Channels:
    """Name each topic's channel, and publish on it: classic pub/sub, or sharded.

    Classic (one Redis): a topic's channel is the key prefix and the topic, published with
    PUBLISH. Sharded (a Redis Cluster): a channel lives on the master owning its hash slot,
    and a script may only SPUBLISH on a channel of its keys' slot, so each channel carries
    the hash tag of the keys its frames are stored with: a conversation's `{<cid>}`
    (`<prefix>conv:{<cid>}`), every other topic routing's `{routing}`
    (`<prefix>{routing}:agent:<id>`, `…:queue:<q>`, `…:team`). Decided once per process
    (runtime/wiring.py); every publisher and the hub name channels here.
    """

    prefix: str
    sharded: bool = False

    def name(self, topic: str) -> str:
        """The channel of a topic."""
        if not self.sharded:
            return self.prefix + topic
        kind, _, rest = topic.partition(":")
        if kind == CONVERSATION_KIND:
            return f"{self.prefix}{CONVERSATION_KIND}:{{{rest}}}"
        return f"{self.prefix}{ROUTING_TAG}:{topic}"

    @property
    def routing(self) -> str:
        """What routing's scripts put before a routing topic to name its channel."""
        return f"{self.prefix}{ROUTING_TAG}:" if self.sharded else self.prefix

    def publish(self, redis: Any, topic: str, data: str) -> int:
        """Ring a topic's doorbell with `data`; how many connections heard it (on a cluster:
        of the master owning the channel)."""
        channel = self.name(topic)
        return redis.spublish(channel, data) if self.sharded else redis.publish(channel, data)


class Subscriber(Protocol):
    """What the hub hands a topic's frames to (web/feeds.py's Feed is one)."""

    transport: Any  # the socket it delivers on: what `forget` forgets it by

    def deliver(self, frame: dict[str, Any], raw: str) -> None: ...

    def resync_later(self) -> None: ...

    def has(self, seq: int) -> bool:
        """Whether the stored message `seq` was sent already (its copy needs no reading)."""
        ...


class _Heartbeat:
    """A subscription's reading and its heartbeat: PING it every HEARTBEAT_S, and take it for
    lost (ConnectionError) once MISSED_HEARTBEATS of them went without any live reply."""

    __slots__ = ("last_heard", "next_ping", "reader")

    def __init__(self) -> None:
        self.last_heard = self.next_ping = 0.0
        self.reader = PushReader()  # all that came at each read (chat/pushes.py)
        self.heard()

    def heard(self) -> None:
        """Count the connection as live now (a reply came, or it was made afresh)."""
        self.last_heard = time.monotonic()
        self.next_ping = self.last_heard + HEARTBEAT_S

    def listen(self, pubsub: Any, live: frozenset[str], handle: Callable[[Push], None],
               ping: Callable[[], None]) -> None:
        """Wait up to a second for replies and hand each to `handle`; ping when due."""
        pushes = self.reader.read(pubsub, 1.0)
        now = time.monotonic()
        for push in pushes:
            if push[0] in live:
                handle(push)
                self.last_heard = now
        if now >= self.next_ping and pubsub.subscribed:
            if now - self.last_heard > HEARTBEAT_S * MISSED_HEARTBEATS:
                raise redis_lib.ConnectionError("no answer to heartbeats")
            ping()
            self.next_ping = now + HEARTBEAT_S


class Hub:
    """Subscribe to the topics this worker's sockets watch and hand their frames to them.

    Classic pub/sub: one connection (`make_pubsub` makes it, and a fresh one after it failed)
    and one dispatcher, for every topic.
    """

    def __init__(self, make_pubsub: Callable[[], redis_lib.client.PubSub] | None, prefix: str,
                 channels: Channels | None = None) -> None:
        self.make_pubsub = make_pubsub
        self.prefix = prefix
        self.channels = channels or Channels(prefix)  # a topic's channel is prefix + topic
        self.subscribers: dict[str, set[Subscriber]] = {}  # topic -> who watches it here
        self.sockets: set[Any] = set()  # every live socket, to close on shutdown
        self._watching: dict[Any, set[tuple[str, Subscriber]]] = {}  # socket -> subscriptions
        self.pubsub: redis_lib.client.PubSub | None = None
        self._started = False
        self._subscribing = gevent.lock.Semaphore()
        self._stale = False  # a subscribe failed: subscribe to every watched channel again
        self._confirmed: set[str] = set()  # topics whose subscription Redis has confirmed
        self.stopping = False
        self._read_at = 0.0  # when the dispatcher last read its connection without a failure

    # --- sockets -------------------------------------------------------------------------

    def register(self, socket: Any) -> None:
        """List a live socket (anything with `close(code, reason)`) for shutdown."""
        self.sockets.add(socket)

    def watch(self, topic: str, subscriber: Any) -> None:
        """Deliver a topic's frames to a subscriber; it is asked to resync once subscribed."""
        self._ensure_started()
        subscribers = self.subscribers.setdefault(topic, set())
        subscribers.add(subscriber)
        self._watching.setdefault(subscriber.transport, set()).add((topic, subscriber))
        if len(subscribers) == 1:
            self._subscribe(topic)

    def connection_live(self) -> bool:
        """Tell whether the pub/sub connection was read without a failure within LIVE_READ_S
        (while anything is subscribed the dispatcher reads it at least every second, and a
        Redis that went away fails that read at once): Redis answers, with no PING asked. On a
        cluster, never (which master a socket needs is not known before its keys are)."""
        return time.monotonic() - self._read_at < LIVE_READ_S

    def confirmed(self, topic: str) -> bool:
        """Tell whether the topic's subscription is confirmed: its doorbell rings here, and its
        subscribers were asked to resync. Until then a socket leaves even what it could send
        itself to the doorbell (web/visitor.py), so nothing reaches it ahead of that resync."""
        return topic in self._confirmed

    def unwatch(self, topic: str, subscriber: Subscriber) -> None:
        """Stop delivering a topic's frames to a subscriber."""
        watching = self._watching.get(subscriber.transport)
        if watching is not None:
            watching.discard((topic, subscriber))
            if not watching:
                del self._watching[subscriber.transport]
        self._drop(topic, subscriber)

    def forget(self, socket: Any) -> None:
        """Stop delivering to a socket that went away, on every topic it watched."""
        self.sockets.discard(socket)
        for topic, subscriber in self._watching.pop(socket, ()):
            self._drop(topic, subscriber)

    def _drop(self, topic: str, subscriber: Subscriber) -> None:
        subscribers = self.subscribers.get(topic)
        if subscribers is None:
            return
        subscribers.discard(subscriber)
        if not subscribers:
            del self.subscribers[topic]
            self._confirmed.discard(topic)
            self._unsubscribe(topic)

    def shutdown(self) -> None:
        """Close every socket with 1001 so clients reconnect to another worker."""
        if self.stopping:
            return
        self.stopping = True
        for socket in list(self.sockets):
            socket.close(frames.CLOSE_GOING_AWAY, "server restarting")
        log.info("closed %d socket(s) for shutdown", len(self.sockets))

    # --- subscribing (classic) -------------------------------------------------------------

    def _subscribe(self, topic: str) -> None:
        """Subscribe to the first watched topic's channel (its dispatcher retries a failure)."""
        try:
            # One at a time: the first subscribe opens the pub/sub connection, and greenlets
            # racing it would each take one from the pool (of 2) and wait for the rest.
            with self._subscribing:
                if self.pubsub is None:  # its making failed in another socket's hello
                    raise redis_lib.ConnectionError("no pub/sub connection yet")
                self.pubsub.subscribe(self.channels.name(topic))
        except CONNECTION_TROUBLE:
            log.warning("subscribe to %s failed; the dispatcher retries", topic)
            self._stale = True

    def _unsubscribe(self, topic: str) -> None:
        try:
            with self._subscribing:
                self.pubsub.unsubscribe(self.channels.name(topic))
        except (*CONNECTION_TROUBLE, AttributeError):
            pass  # on reconnect only channels with subscribers are subscribed again

    # --- dispatching (classic) -------------------------------------------------------------

    def _ensure_started(self) -> None:
        if self._started:
            return
        # Started before the pubsub is made: making it may switch greenlets, and sockets
        # arriving meanwhile must not start dispatchers of their own on it. They wait for it
        # in their subscribe, which takes the same semaphore.
        self._started = True
        try:
            with self._subscribing:
                self.pubsub = self.make_pubsub()
        except BaseException:
            self._started = False  # the next socket tries again
            raise
        gevent.spawn(self._run)

    def _run(self) -> None:
        delay = 0.1
        beat = _Heartbeat()
        while not self.stopping:
            try:
                if self._stale:
                    self._resubscribe()
                # unsubscribed, redis-py does not read the connection at all: no news of it
                subscribed = self.pubsub.subscribed
                beat.listen(self.pubsub, LIVE_REPLIES, self._handle, self.pubsub.ping)
                self._read_at = time.monotonic() if subscribed and self.pubsub.subscribed \
                    else 0.0
                delay = 0.1
            except CONNECTION_TROUBLE as exc:
                self._read_at = 0.0
                log.warning("pub/sub connection lost (%s); reconnecting in %.1f s", exc, delay)
                if self.pubsub.connection is not None:
                    self.pubsub.connection.disconnect()
                time.sleep(delay)
                delay = min(delay * 2, RECONNECT_MAX_S)
                beat.heard()
                self._renew()
                self._resubscribe()
            except Exception:  # noqa: BLE001 - the dispatcher must outlive any one frame
                log.exception("dispatching a frame failed")

    def _renew(self) -> None:
        """Make a fresh pubsub after a lost connection (keeps the old one if that fails)."""
        old = self.pubsub
        try:
            self.pubsub = self.make_pubsub()
        except CONNECTION_TROUBLE:
            return  # the next round tries again
        try:
            old.close()  # gives its connection back: the pool holds two
        except CONNECTION_TROUBLE:
            pass

    def _resubscribe(self) -> None:
        """Subscribe again to every watched topic (confirmations trigger resyncs)."""
        channels = [self.channels.name(topic) for topic in list(self.subscribers)]
        self._confirmed.clear()  # each is confirmed again, and its subscribers resync
        # What redis-py itself re-subscribes on any reconnect: exactly what is watched.
        self.pubsub.channels = dict.fromkeys(channels)
        try:
            if channels:
                with self._subscribing:
                    self.pubsub.subscribe(*channels)
            self._stale = False
        except CONNECTION_TROUBLE:
            self._stale = True  # still away; the next round tries again

    def _handle(self, push: Push) -> None:
        """Hand a published frame to a topic's subscribers; a confirmed subscription resyncs."""
        kind, channel, data = push
        if kind == "message":
            self._ring(channel[len(self.prefix):], data)
        elif kind == "subscribe":
            self._subscribed(channel[len(self.prefix):])

    # --- either ----------------------------------------------------------------------------

    def _ring(self, topic: str | None, data: str) -> None:
        """Hand what a topic's doorbell rang (frames, one a line) to its subscribers."""
        subscribers = list(self.subscribers.get(topic, ()))
        for raw in data.split("\n"):  # a bot turn rings once for all it said
            seq = _stored_seq(raw)
            if seq and all(subscriber.has(seq) for subscriber in subscribers):
                continue  # sent already (the sender's own socket sent its echo and answer)
            frame = json.loads(raw)
            for subscriber in subscribers:
                subscriber.deliver(frame, raw)

    def _subscribed(self, topic: str | None) -> None:
        """A topic's subscription is confirmed: its doorbell rings here; its subscribers
        resync, for what was rung before."""
        if topic in self.subscribers:
            self._confirmed.add(topic)
        for subscriber in list(self.subscribers.get(topic, ())):
            subscriber.resync_later()


class Shards(Protocol):
    """Where a sharded subscription goes: runtime/redis_clients.py's ClusterShards."""

    def node_of(self, channel: str) -> str:
        """The master owning the channel's slot ("host:port"), as the client's map of the
        cluster has it; raise a RedisError when the cluster does not answer."""
        ...

    def pubsub(self, node: str) -> redis_lib.client.PubSub:
        """A fresh pub/sub object on a connection to `node` (it dials on its first command)."""
        ...

    def refresh(self) -> None:
        """Read the cluster's map of slots again (keep the old one when no node answers)."""
        ...


class ShardedHub(Hub):
    """The hub on a Redis Cluster: sharded pub/sub, one connection per master it needs.

    A watched topic's channel is SSUBSCRIBEd on a connection to the master owning its slot,
    each connection read by a dispatcher of its own (`_Link`), made with the first channel
    of its master and ended with the last. A lost connection is made again with back-off,
    after the cluster's map is read again: a channel whose slot moved (a failover, a
    resharding: MOVED, or the `sunsubscribe` Redis 7 sends when a slot leaves a master) is
    subscribed on its new owner. Each (re)made subscription asks its subscribers to resync,
    as with classic pub/sub.
    """

    def __init__(self, shards: Shards, channels: Channels) -> None:
        super().__init__(None, channels.prefix, channels)
        self.shards = shards
        self._links: dict[str, _Link] = {}  # node -> its connection and dispatcher
        self._home: dict[str, _Link] = {}  # watched channel -> the link it is subscribed on
        self._topics: dict[str, str] = {}  # watched channel -> its topic
        self._homeless: set[str] = set()  # watched channels waiting for a master to be found
        self._placing: gevent.Greenlet | None = None  # finds them one

    def _ensure_started(self) -> None:
        self._started = True  # each link starts its own dispatcher

    def _subscribe(self, topic: str) -> None:
        channel = self.channels.name(topic)
        self._topics[channel] = topic
        try:
            node = self.shards.node_of(channel)
        except CONNECTION_TROUBLE:
            log.warning("no master known for %s; subscribing once the cluster answers", topic)
            self._rehome([channel])
            return
        self._link(node).add(channel)

    def _unsubscribe(self, topic: str) -> None:
        channel = self.channels.name(topic)
        self._topics.pop(channel, None)
        self._homeless.discard(channel)
        link = self._home.pop(channel, None)
        if link is not None:
            link.remove(channel)

    def _link(self, node: str) -> _Link:
        """The link to `node`, made (and its dispatcher started) if there is none."""
        link = self._links.get(node)
        if link is None:
            link = self._links[node] = _Link(self, node)
            gevent.spawn(link.run)
        return link

    def _rehome(self, channels: Iterable[str]) -> None:
        """Subscribe watched channels wherever their slots are now, once the map is read
        again (in one greenlet, so a burst of moved channels reads it once)."""
        self._homeless.update(channels)
        if self._placing is None:
            self._placing = gevent.spawn(self._place_homeless)

    def _place_homeless(self) -> None:
        delay = 0.1
        while self._homeless and not self.stopping:
            self.shards.refresh()
            for channel in list(self._homeless):
                if channel not in self._topics:  # nobody watches it any more
                    self._homeless.discard(channel)
                    continue
                try:
                    node = self.shards.node_of(channel)
                except CONNECTION_TROUBLE:
                    break  # the cluster does not answer: all of them later
                self._homeless.discard(channel)
                self._link(node).add(channel)
            if self._homeless:
                gevent.sleep(delay)
                delay = min(delay * 2, RECONNECT_MAX_S)
        self._placing = None


class _Link:
    """A ShardedHub's connection to one master: the channels subscribed there, and the
    dispatcher that reads it (heartbeats, reconnects, and follows moved slots)."""

    def __init__(self, hub: ShardedHub, node: str) -> None:
        self.hub = hub
        self.node = node
        self.pubsub = hub.shards.pubsub(node)
        self.channels: set[str] = set()  # what is to be subscribed here
        self.leaving: Counter[str] = Counter()  # our own SUNSUBSCRIBEs not yet answered
        self.lock = gevent.lock.Semaphore()  # one command at a time on the connection
        self.stale = False  # a subscribe failed: make the connection again

    def add(self, channel: str) -> None:
        """Subscribe a channel here (a failure is retried by the dispatcher)."""
        self.hub._home[channel] = self
        self.channels.add(channel)
        try:
            with self.lock:
                self.pubsub.ssubscribe(channel)
        except CONNECTION_TROUBLE as exc:
            log.warning("subscribe to %s on %s failed (%s); the dispatcher retries",
                        channel, self.node, exc)
            self.stale = True

    def remove(self, channel: str) -> None:
        self.channels.discard(channel)
        self.leaving[channel] += 1
        try:
            with self.lock:
                self.pubsub.sunsubscribe(channel)
        except CONNECTION_TROUBLE:
            pass  # a connection made again subscribes only what is watched

    def run(self) -> None:
        hub = self.hub
        delay = 0.1
        beat = _Heartbeat()
        while not hub.stopping:
            if not self.channels:  # the last one went: so does the connection
                self._end()
                return
            try:
                if self.stale:
                    raise redis_lib.ConnectionError("a subscribe failed")
                beat.listen(self.pubsub, SHARD_LIVE_REPLIES, self._handle, self._ping)
                delay = 0.1
            except CONNECTION_TROUBLE as exc:
                # MOVED (the slot has another master now) comes here too, as an error reply
                log.warning("sharded pub/sub connection to %s lost (%s); reconnecting in %.1f s",
                            self.node, exc, delay)
                if self.pubsub.connection is not None:
                    self.pubsub.connection.disconnect()
                time.sleep(delay)
                delay = min(delay * 2, RECONNECT_MAX_S)
                beat.heard()
                self._recover()
            except Exception:  # noqa: BLE001 - the dispatcher must outlive any one frame
                log.exception("dispatching a frame failed")

    def _ping(self) -> None:
        with self.lock:
            self.pubsub.ping()

    def _handle(self, push: Push) -> None:
        hub = self.hub
        kind, channel, data = push
        if kind == "smessage":
            hub._ring(hub._topics.get(channel), data)
        elif kind == "ssubscribe":
            if hub._home.get(channel) is self:
                hub._subscribed(hub._topics.get(channel))
        elif kind == "sunsubscribe":
            if self.leaving[channel] > 0:  # the answer to our own
                self.leaving[channel] -= 1
                if not self.leaving[channel]:
                    del self.leaving[channel]
                return
            # Redis's own: the channel's slot left this master (resharding, or the master
            # became a replica). redis-py would subscribe it here again on a reconnect.
            self._forget(channel)
            if channel in self.channels:
                log.info("%s left %s; subscribing where its slot is now", channel, self.node)
                self.channels.discard(channel)
                hub._home.pop(channel, None)
                hub._confirmed.discard(hub._topics.get(channel))
                hub._rehome([channel])

    def _forget(self, channel: str) -> None:
        """Make redis-py forget a shard channel the server unsubscribed."""
        pubsub = self.pubsub
        pubsub.shard_channels.pop(channel, None)
        if not (pubsub.channels or pubsub.patterns or pubsub.shard_channels):
            pubsub.subscribed_event.clear()

    def _recover(self) -> None:
        """After a lost connection or an error reply: read the cluster's map again, move the
        channels whose slot has another master now to that master's link, and subscribe
        the rest again on a fresh connection (each confirmation makes its subscribers
        resync)."""
        hub = self.hub
        hub.shards.refresh()
        for channel in sorted(self.channels):
            hub._confirmed.discard(hub._topics.get(channel))
            try:
                node = hub.shards.node_of(channel)
            except CONNECTION_TROUBLE:
                continue  # the map is not known: try here again
            if node != self.node:
                self.channels.discard(channel)
                hub._link(node).add(channel)
        old, self.pubsub = self.pubsub, hub.shards.pubsub(self.node)
        self.leaving.clear()
        try:
            old.close()  # gives its connection back: the node's pool holds two
        except CONNECTION_TROUBLE:
            pass
        self.stale = False
        if not self.channels:
            return
        channels = sorted(self.channels)
        # What redis-py itself re-subscribes on any reconnect: exactly what is watched here.
        self.pubsub.shard_channels = dict.fromkeys(channels)
        try:
            with self.lock:
                for group in by_slot(channels):  # SSUBSCRIBE takes one slot's channels
                    self.pubsub.ssubscribe(*group)
        except CONNECTION_TROUBLE:
            self.stale = True  # still away; the next round tries again

    def _end(self) -> None:
        if self.hub._links.get(self.node) is self:
            del self.hub._links[self.node]
        try:
            self.pubsub.close()
        except CONNECTION_TROUBLE:
            pass


def by_slot(channels: Iterable[str]) -> list[list[str]]:
    """Group channels by hash slot: one SSUBSCRIBE may name only one slot's channels."""
    groups: dict[int, list[str]] = {}
    for channel in channels:
        groups.setdefault(key_slot(channel.encode()), []).append(channel)
    return list(groups.values())


def _stored_seq(raw: str) -> int:
    """The seq of a stored message as the store writes it (`{"seq":N,…`), else 0."""
    if not raw.startswith('{"seq":'):
        return 0
    try:
        return int(raw[7:raw.index(",", 7)])
    except ValueError:
        return 0
