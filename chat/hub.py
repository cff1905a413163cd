"""The worker's doorbell: one pub/sub connection and one dispatcher per worker.

Sockets on any worker of any instance stay in step because every stored frame
is published on its conversation's channel (a bot turn's messages together, one
a line). Pub/sub only rings the bell: when
a subscription is (re)made, each watching socket reads the log for what it may
have missed, so a Redis restart or a lost publish loses nothing.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

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


class Hub:
    """Subscribe to the conversations this worker's sockets watch and hand frames to them."""

    def __init__(self, make_pubsub: Callable[[], redis_lib.client.PubSub],
                 channel: Callable[[str], str], conversation_of: Callable[[str], str]) -> None:
        self.make_pubsub = make_pubsub
        self.channel = channel
        self.conversation_of = conversation_of
        self.watchers: dict[str, set[Any]] = {}
        self.connections: set[Any] = set()  # every live socket, to close on shutdown
        self.pubsub: redis_lib.client.PubSub | None = None
        self._started = False
        self._subscribing = gevent.lock.Semaphore()
        self._stale = False  # a subscribe failed: subscribe to every watched channel again
        self.stopping = False

    # --- sockets -------------------------------------------------------------------------

    def register(self, connection: Any) -> None:
        self.connections.add(connection)

    def watch(self, cid: str, connection: Any) -> None:
        """Deliver a conversation's frames to a socket; it resyncs once subscribed."""
        self._ensure_started()
        connection.conversation = cid
        watchers = self.watchers.setdefault(cid, set())
        watchers.add(connection)
        if len(watchers) == 1:
            try:
                # One at a time: the first subscribe opens the pub/sub connection, and greenlets
                # racing it would each take one from the pool (of 2) and wait for the rest.
                with self._subscribing:
                    self.pubsub.subscribe(self.channel(cid))
            except (redis_lib.RedisError, OSError):
                log.warning("subscribe to %s failed; the dispatcher retries", cid)
                self._stale = True

    def forget(self, connection: Any) -> None:
        """Stop delivering to a socket that went away."""
        self.connections.discard(connection)
        cid = connection.conversation
        watchers = self.watchers.get(cid) if cid else None
        if watchers is None:
            return
        watchers.discard(connection)
        if not watchers:
            del self.watchers[cid]
            try:
                with self._subscribing:
                    self.pubsub.unsubscribe(self.channel(cid))
            except (redis_lib.RedisError, AttributeError):
                pass  # on reconnect only channels with watchers are subscribed again

    def shutdown(self) -> None:
        """Close every socket with 1001 so clients reconnect to another worker."""
        if self.stopping:
            return
        self.stopping = True
        for connection in list(self.connections):
            connection.close(frames.CLOSE_GOING_AWAY, "server restarting")
        log.info("closed %d socket(s) for shutdown", len(self.connections))

    # --- dispatching ---------------------------------------------------------------------

    def _ensure_started(self) -> None:
        if self._started:  # no switch can happen between this test and the spawn
            return
        self.pubsub = self.make_pubsub()
        self._started = True
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
                self._resubscribe()
            except Exception:  # noqa: BLE001 - the dispatcher must outlive any one frame
                log.exception("dispatching a frame failed")

    def _resubscribe(self) -> None:
        """Subscribe again to every watched conversation (confirmations trigger resyncs)."""
        channels = [self.channel(cid) for cid in list(self.watchers)]
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
        """Hand a published frame to the sockets watching; a confirmed subscription resyncs."""
        kind = message["type"]
        if kind == "message":
            cid = self.conversation_of(message["channel"])
            watchers = list(self.watchers.get(cid, ()))
            for raw in message["data"].split("\n"):  # a bot turn rings once for all it said
                frame = json.loads(raw)
                for connection in watchers:
                    connection.deliver(frame, raw)
        elif kind == "subscribe":
            cid = self.conversation_of(message["channel"])
            for connection in list(self.watchers.get(cid, ())):
                connection.resync_later()
