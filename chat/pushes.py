"""Reading a pub/sub connection: every reply that has come, parsed at once, in a few lines.

redis-py's `PubSub.get_message` reads one reply a call, and each call goes through its retry
wrapper, its health check, its reply parser one element at a time, a dict per message and its
metrics hook: a sixth of a worker's CPU at a few hundred bot turns a second, most of it for
the turn's own publish coming back (docs/operating.md, "Reading the doorbell"). The hub's
dispatcher reads its connection here instead: one `recv` takes what Redis has sent, and every
whole reply in it comes back as a list of `(kind, channel, data)`.

redis-py still writes on the connection (SUBSCRIBE, PING, its reconnects) and keeps its
bookkeeping: the replies that change it (an unsubscribe's confirmation) are told to it here as
its own reader would. It reads the connection itself only while it dials (its handshake) and in
its health check before a command sent unsubscribed, when nothing is pushed; what it may have
left in its buffer is taken over when the connection is new.

Replies are parsed by chat/resp.py. A subscribed RESP2 connection is sent arrays of bulk strings
and integers (`message`, `smessage`, the confirmations, `pong`), simple strings and errors. An
error reply (MOVED, on a cluster whose slot moved) is raised after the replies before it are
handed out.
"""

from __future__ import annotations

from typing import Any

import redis as redis_lib

from .resp import READ_BYTES, Incomplete, parse

UNSUBSCRIBED = {"unsubscribe": ("channels", "pending_unsubscribe_channels"),
                "sunsubscribe": ("shard_channels", "pending_unsubscribe_shard_channels"),
                "punsubscribe": ("patterns", "pending_unsubscribe_patterns")}

Push = tuple[str, Any, Any]  # (kind, channel, data): data is an int in a confirmation


class PushReader:
    """The dispatcher's reader of one pubsub's connection (one reader per dispatcher)."""

    def __init__(self) -> None:
        self._sock: Any = None  # the socket the buffer's bytes came from
        self._buffer = b""
        self._error: BaseException | None = None  # an error reply, raised on the next read

    def read(self, pubsub: redis_lib.client.PubSub, timeout: float) -> list[Push]:
        """Wait up to `timeout` for replies; return every whole one that came, oldest first.

        Raises redis.ConnectionError when the connection is closed or gone, an OSError of the
        socket, or the error a reply carried.
        """
        if not pubsub.subscribed and not pubsub.subscribed_event.wait(timeout):
            return []  # nothing subscribed: redis-py would not read it either
        connection = pubsub.connection
        sock = getattr(connection, "_sock", None)
        if sock is None:
            raise redis_lib.ConnectionError("the pub/sub connection is closed")
        if sock is not self._sock:  # dialled afresh: what was left belongs to the old one
            self._sock, self._buffer = sock, _left_by_redis_py(connection)
            self._error = None  # an error of the old connection: this one is made afresh
        pushes: list[Push] = []
        if not self._parse_into(pushes) and self._error is None:  # nothing whole left: wait
            before = sock.gettimeout()
            sock.settimeout(timeout)  # gevent's socket: an attribute, no system call
            try:
                data = sock.recv(READ_BYTES)
            except TimeoutError:
                return []
            finally:
                sock.settimeout(before)
            if not data:
                raise redis_lib.ConnectionError("Redis closed the pub/sub connection")
            self._buffer += data
            self._parse_into(pushes)
        if not pushes and self._error is not None:
            error, self._error = self._error, None
            raise error
        for kind, channel, _data in pushes:
            if kind in UNSUBSCRIBED:
                _unsubscribed(pubsub, kind, channel)
        return pushes

    def _parse_into(self, pushes: list[Push]) -> bool:
        """Parse the buffer's whole replies into `pushes`; keep the rest. True if any."""
        buffer, at = self._buffer, 0
        if not buffer:
            return False
        try:
            while at < len(buffer):
                reply, at = parse(buffer, at)
                if isinstance(reply, BaseException):
                    self._error = reply
                    at = len(buffer)  # the connection is made again after an error
                    break
                if isinstance(reply, list):
                    pushes.append((reply[0], reply[1] if len(reply) > 1 else None,
                                   reply[2] if len(reply) > 2 else None))
                else:  # a simple string: PONG to a connection not subscribed (not a sign)
                    pushes.append(("simple", None, reply))
        except Incomplete:
            pass
        self._buffer = buffer[at:]
        return bool(pushes)


def _unsubscribed(pubsub: redis_lib.client.PubSub, kind: str, channel: Any) -> None:
    """Tell redis-py's pubsub of an unsubscribe's confirmation, as its own reader does."""
    subscribed, pending = (getattr(pubsub, name) for name in UNSUBSCRIBED[kind])
    if channel in pending:
        pending.remove(channel)
        subscribed.pop(channel, None)
    if not (pubsub.channels or pubsub.patterns or pubsub.shard_channels):
        pubsub.subscribed_event.clear()


def _left_by_redis_py(connection: Any) -> bytes:
    """The bytes redis-py's own reader took from a connection and has not parsed (its
    handshake's reader), or b"" when it keeps none or keeps them where it did not before."""
    buffer = getattr(getattr(getattr(connection, "_parser", None), "_buffer", None), "_buffer",
                     None)
    if buffer is None or not hasattr(buffer, "getvalue"):
        return b""
    return buffer.getvalue()[buffer.tell():]
