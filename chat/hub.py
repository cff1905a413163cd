"""The worker's doorbell: one pub/sub connection and one dispatcher per worker, by topic.

A topic is a string naming what frames are about: a conversation's is
`conv:<cid>` (Conversations.topic), and agents' and queues' come with
routing. Its channel is the key prefix and the topic. Sockets on any worker
of any instance stay in step because every stored frame is published on its
topic's channel (a bot turn's messages together, one a line). Pub/sub only
rings the bell: when a subscription is (re)made, each subscriber of the topic
is asked to resync (read the log for what it may have missed), so a Redis
restart or a lost publish loses nothing.

A subscriber is any object with `deliver(frame, raw)`, `resync_later()` and
`transport`, the socket it delivers on (web/feeds.py's Feed is one). One socket
may watch many topics; `forget(socket)` ends all of its subscriptions, and
`register(socket)` lists it for the 1001 of a shutdown.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

import gevent
import gevent.lock
import redis as redis_lib

from . import frames

log = logging.getLogger("concierge.hub")

HEARTBEAT_S = 10.0  # PING on the subscription: a half-open connection is noticed in 30 s
MISSED_HEARTBEATS = 3
RECONNECT_MAX_S = 5.0  # back-off cap while Redis is away
# Replies that prove the subscription lives. An unsubscribed connection's PONG comes back from
# redis-py as {'type': 'P', ...}: that one does not count.
LIVE_REPLIES = frozenset({"message", "subscribe", "unsubscribe", "pong"})


class Subscriber(Protocol):
    """What the hub hands a topic's frames to (web/feeds.py's Feed is one)."""

    transport: Any  # the socket it delivers on: what `forget` forgets it by

    def deliver(self, frame: dict[str, Any], raw: str) -> None: ...

    def resync_later(self) -> None: ...

    def has(self, seq: int) -> bool:
        """Whether the stored message `seq` was sent already (its copy needs no reading)."""
        ...


class Hub:
    """Subscribe to the topics this worker's sockets watch and hand their frames to them."""

    def __init__(self, make_pubsub: Callable[[], redis_lib.client.PubSub], prefix: str) -> None:
        self.make_pubsub = make_pubsub
        self.prefix = prefix  # a topic's channel is prefix + topic
        self.subscribers: dict[str, set[Subscriber]] = {}  # topic -> who watches it here
        self.sockets: set[Any] = set()  # every live socket, to close on shutdown
        self._watching: dict[Any, set[tuple[str, Subscriber]]] = {}  # socket -> subscriptions
        self.pubsub: redis_lib.client.PubSub | None = None
        self._started = False
        self._subscribing = gevent.lock.Semaphore()
        self._stale = False  # a subscribe failed: subscribe to every watched channel again
        self._confirmed: set[str] = set()  # topics whose subscription Redis has confirmed
        self.stopping = False

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
            try:
                # One at a time: the first subscribe opens the pub/sub connection, and greenlets
                # racing it would each take one from the pool (of 2) and wait for the rest.
                with self._subscribing:
                    if self.pubsub is None:  # its making failed in another socket's hello
                        raise redis_lib.ConnectionError("no pub/sub connection yet")
                    self.pubsub.subscribe(self.prefix + topic)
            except (redis_lib.RedisError, OSError):
                log.warning("subscribe to %s failed; the dispatcher retries", topic)
                self._stale = True

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
            try:
                with self._subscribing:
                    self.pubsub.unsubscribe(self.prefix + topic)
            except (redis_lib.RedisError, AttributeError):
                pass  # on reconnect only channels with subscribers are subscribed again

    def shutdown(self) -> None:
        """Close every socket with 1001 so clients reconnect to another worker."""
        if self.stopping:
            return
        self.stopping = True
        for socket in list(self.sockets):
            socket.close(frames.CLOSE_GOING_AWAY, "server restarting")
        log.info("closed %d socket(s) for shutdown", len(self.sockets))

    # --- dispatching ---------------------------------------------------------------------

    def _ensure_started(self) -> None:
        if self._started:
            return
        # Started before the pubsub is made: making it may switch greenlets (on a cluster it
        # dials a node), and sockets arriving meanwhile must not start dispatchers of their
        # own on it. They wait for it in their subscribe, which takes the same semaphore.
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
        last_heard = time.monotonic()
        next_ping = last_heard + HEARTBEAT_S
        while not self.stopping:
            try:
                if self._stale:
                    self._resubscribe()
                message = self.pubsub.get_message(timeout=1.0)
                now = time.monotonic()
                if message is not None and message["type"] in LIVE_REPLIES:
                    self._handle(message)
                    last_heard = now
                if now >= next_ping and self.pubsub.subscribed:
                    if now - last_heard > HEARTBEAT_S * MISSED_HEARTBEATS:
                        raise redis_lib.ConnectionError("no answer to heartbeats")
                    self.pubsub.ping()
                    next_ping = now + HEARTBEAT_S
                delay = 0.1
            except (redis_lib.RedisError, OSError) as exc:
                log.warning("pub/sub connection lost (%s); reconnecting in %.1f s", exc, delay)
                if self.pubsub.connection is not None:
                    self.pubsub.connection.disconnect()
                time.sleep(delay)
                delay = min(delay * 2, RECONNECT_MAX_S)
                last_heard = time.monotonic()
                self._renew()
                self._resubscribe()
            except Exception:  # noqa: BLE001 - the dispatcher must outlive any one frame
                log.exception("dispatching a frame failed")

    def _renew(self) -> None:
        """Make a fresh pubsub after a lost connection: on a Redis Cluster the old one keeps
        the node it first picked, which a failover may have replaced; a fresh one picks from
        the cluster's current map (runtime/redis_clients.py). Keeps the old one if that fails."""
        old = self.pubsub
        try:
            self.pubsub = self.make_pubsub()
        except (redis_lib.RedisError, OSError):
            return  # the next round tries again
        try:
            old.close()  # gives its connection back: the pool holds two
        except (redis_lib.RedisError, OSError):
            pass

    def _resubscribe(self) -> None:
        """Subscribe again to every watched topic (confirmations trigger resyncs)."""
        channels = [self.prefix + topic for topic in list(self.subscribers)]
        self._confirmed.clear()  # each is confirmed again, and its subscribers resync
        # What redis-py itself re-subscribes on any reconnect: exactly what is watched.
        self.pubsub.channels = dict.fromkeys(channels)
        try:
            if channels:
                with self._subscribing:
                    self.pubsub.subscribe(*channels)
            self._stale = False
        except (redis_lib.RedisError, OSError):
            self._stale = True  # still away; the next round tries again

    def _handle(self, message: dict) -> None:
        """Hand a published frame to a topic's subscribers; a confirmed subscription resyncs."""
        kind = message["type"]
        if kind == "message":
            subscribers = list(self.subscribers.get(message["channel"][len(self.prefix):], ()))
            for raw in message["data"].split("\n"):  # a bot turn rings once for all it said
                seq = _stored_seq(raw)
                if seq and all(subscriber.has(seq) for subscriber in subscribers):
                    continue  # sent already (the sender's own socket sent its echo and answer)
                frame = json.loads(raw)
                for subscriber in subscribers:
                    subscriber.deliver(frame, raw)
        elif kind == "subscribe":
            topic = message["channel"][len(self.prefix):]
            if topic in self.subscribers:
                self._confirmed.add(topic)
            for subscriber in list(self.subscribers.get(topic, ())):
                subscriber.resync_later()


def _stored_seq(raw: str) -> int:
    """The seq of a stored message as the store writes it (`{"seq":N,…`), else 0."""
    if not raw.startswith('{"seq":'):
        return 0
    try:
        return int(raw[7:raw.index(",", 7)])
    except ValueError:
        return 0
