"""One client's WebSocket: ordered, locked writes, and messages delivered in `seq` order.

Every frame for a socket goes through its outbox and one writer greenlet, and
every write to the socket, simple-websocket's own (pongs, close replies) too,
takes the connection's one lock: under gevent two greenlets waiting to write
on one socket is an error (flask-sock #85), and whole frames go out with
`sendall` (a plain `send` may write part of a frame: simple-websocket #45).
A client that stops reading is cut off: a write that cannot finish in
WRITE_TIMEOUT_S, or an outbox over its caps, closes the socket without ever
making the worker's dispatcher wait for it.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

import gevent
import gevent.event
from simple_websocket import ConnectionClosed
from wsproto.events import CloseConnection, Ping, TextMessage
from wsproto.utilities import LocalProtocolError

from chat import frames

log = logging.getLogger("concierge.sockets")

MAX_OUTBOX = 2_000  # frames queued for a client that does not read; then it is cut off
MAX_OUTBOX_BYTES = 4 * 1024 * 1024  # the same in bytes: 2,000 frames may be 32 MB
WRITE_BATCH = 64  # frames joined into one write: an answer is an ack, an echo and a few messages
WRITE_TIMEOUT_S = 10.0  # a client whose socket takes no bytes for this long is gone
REPLAY_PAGE = 100  # stored messages read and queued at a time when a client catches up
REPLAY_DRAIN_WAIT_S = 30.0  # a client that reads nothing for this long is cut off
RESYNC_RETRY_S = 1.0  # after a failed read of the log, while a gap remains
RESYNC_TRIES = 5  # reads that find nothing of a gap before it is skipped
WRITE_ERRORS = (OSError, ConnectionClosed, LocalProtocolError, gevent.Timeout)


class _LockedSocket:
    """The socket as simple-websocket sees it: its writes take the connection's lock."""

    def __init__(self, sock: Any, lock: Any) -> None:
        self._sock = sock
        self._lock = lock

    def send(self, data: bytes) -> int:
        with self._lock, gevent.Timeout(WRITE_TIMEOUT_S):
            self._sock.sendall(data)
        return len(data)

    sendall = send

    def __getattr__(self, name: str) -> Any:  # recv, close, fileno… go to the socket
        return getattr(self._sock, name)


class Connection:
    """A live socket watching (at most) one conversation."""

    def __init__(self, ws: Any, read_log: Callable[[str, int, int], list[str]]) -> None:
        self.ws = ws
        self.read_log = read_log  # (conversation, after_seq, until_seq) -> stored messages, JSON
        self.conversation: str | None = None
        self.last_seq = 0  # the last message this client has been sent
        self.highest_seen = 0  # the highest seq the doorbell has announced
        self.pending_acks: set[str] = set()  # ids of this client's messages not yet acked
        self.closed = False
        self._lock = threading.RLock()  # wsproto's state and the socket's writes
        self._raw = ws.sock
        ws.sock = _LockedSocket(ws.sock, self._lock)
        self._outbox: deque[str] = deque()
        self._outbox_bytes = 0
        self._writing = False
        self._resyncing = False
        self._holding: list[str] | None = []  # live non-message frames, until the hello is done
        # the same while catching up with the log: (highest seq rung before it, frame)
        self._deferred: deque[tuple[int, str]] = deque()
        self._drained = gevent.event.Event()
        self._drained.set()

    # --- writing -------------------------------------------------------------------------

    def send(self, frame: dict[str, Any]) -> None:
        """Queue a frame for this client."""
        self.post(frames.dump(frame))

    def post(self, text: str) -> None:
        if self.closed:
            return
        if len(self._outbox) >= MAX_OUTBOX or self._outbox_bytes + len(text) > MAX_OUTBOX_BYTES:
            log.warning("client of %s reads too slowly; closing", self.conversation)
            # never from the caller's greenlet: it may be the dispatcher of every socket
            gevent.spawn(self.close, frames.CLOSE_TRY_LATER, "too many frames waiting")
            self.closed = True
            return
        self._outbox.append(text)
        self._outbox_bytes += len(text)
        self._drained.clear()
        if not self._writing:
            self._writing = True
            gevent.spawn(self._drain)  # spawn never switches, so frames keep their order

    def _drain(self) -> None:
        try:
            while self._outbox and not self.closed:
                batch = [self._outbox.popleft() for _ in range(min(len(self._outbox),
                                                                   WRITE_BATCH))]
                self._outbox_bytes -= sum(map(len, batch))
                with self._lock:  # frames queued together go out in one write
                    self._write(b"".join(self.ws.ws.send(TextMessage(data=text))
                                         for text in batch))
        except WRITE_ERRORS:  # the client went away, or stopped reading
            self._abort()
        finally:
            # No switch happens between the empty check and this line under gevent, so no
            # frame can be left behind (sockets are served by gevent workers only).
            self._writing = False
            self._drained.set()

    def _write(self, data: bytes) -> None:
        if not self.ws.connected:
            raise ConnectionClosed(self.ws.close_reason, self.ws.close_message)
        self.ws.sock.sendall(data)

    def ping(self) -> bool:
        """Send a keep-alive ping; return False if the last one got no pong."""
        if not self.ws.pong_received:
            return False
        self.ws.pong_received = False
        try:
            with self._lock:
                self._write(self.ws.ws.send(Ping()))
        except WRITE_ERRORS:
            return False
        return True

    def close(self, code: int, reason: str = "") -> None:
        """Send a close frame (once) and wake the handler waiting on the socket.

        If a write is stuck on a client that does not read, there is no waiting
        behind it: the socket is shut down, which fails that write.
        """
        if not self.closed or self.ws.connected:
            self.closed = True
            if self._lock.acquire(blocking=False):
                try:
                    if self.ws.connected:
                        self.ws.sock.sendall(self.ws.ws.send(CloseConnection(code, reason)))
                except (*WRITE_ERRORS, Exception):  # noqa: BLE001 - closing, whatever state
                    pass
                finally:
                    self._lock.release()
            else:
                self._abort()
        self.ws.connected = False
        self.ws.event.set()

    def _abort(self) -> None:
        """Cut the connection at once (a client that stopped reading gets no close frame)."""
        self.closed = True
        try:
            self._raw.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.ws.connected = False
        self.ws.event.set()

    # --- delivering ------------------------------------------------------------------------

    def deliver(self, frame: dict[str, Any], raw: str) -> None:
        """Take a frame rung on the conversation's doorbell."""
        if frame.get("type") != "message":
            if frame.get("type") == "typing" and frame.get("from") == "visitor":
                return  # the visitor's own typing is not echoed to its tabs
            if self._holding is not None:
                self._holding.append(raw)  # after the hello's replay and status
            elif self._resyncing or self._deferred or self.highest_seen > self.last_seq:
                self._defer(raw)
            else:
                self.post(raw)
            return
        seq = int(frame.get("seq", 0))
        self.highest_seen = max(self.highest_seen, seq)
        if seq <= self.last_seq:
            return
        if seq == self.last_seq + 1 and not self._resyncing:
            self.last_seq = seq
            self._ack_first(frame)
            self.post(raw)
            self._post_deferred()
            return
        self.resync_later()

    def _defer(self, raw: str) -> None:
        """Hold a frame back until the messages rung before it have been sent."""
        if len(self._deferred) >= MAX_OUTBOX:
            self.post(raw)  # as good as a full outbox: the client is cut off
            return
        self._deferred.append((self.highest_seen, raw))

    def _post_deferred(self) -> None:
        """Send the held-back frames whose messages have all been sent."""
        while self._deferred and self._deferred[0][0] <= self.last_seq:
            self.post(self._deferred.popleft()[1])

    def release_held(self) -> None:
        """Send the live frames held while the hello's replay and status went out."""
        held, self._holding = self._holding or [], None
        for raw in held:
            self.post(raw)

    def _ack_first(self, frame: dict[str, Any]) -> None:
        """Send this client its ack before the echo of its own message."""
        message_id = frame.get("id")
        if frame.get("from") == "visitor" and message_id in self.pending_acks:
            self.pending_acks.discard(message_id)
            self.send(frames.ack(message_id, int(frame["seq"])))

    def acknowledge(self, message_id: str, seq: int) -> None:
        """Ack a message this client sent, unless its echo has already carried the ack."""
        if message_id in self.pending_acks:
            self.pending_acks.discard(message_id)
            self.send(frames.ack(message_id, seq))

    def resync_later(self) -> None:
        """Read what this client missed from the log, in a greenlet of its own."""
        if not self._resyncing and self.conversation:
            self._resyncing = True
            gevent.spawn(self.resync)

    def resync(self) -> None:
        """Send every stored message after last_seq, until caught up with the doorbell.

        A page at a time, letting the outbox drain in between: a long conversation is
        replayed in full to a client that reads, and the outbox caps still cut off one that
        does not. A failed read is tried again a second later while a gap remains; statuses
        and typing frames rung meanwhile wait for the messages rung before them.
        """
        self._resyncing = True
        stuck = 0
        try:
            while self.conversation and not self.closed:
                stored = self.read_log(self.conversation, self.last_seq,
                                       self.last_seq + REPLAY_PAGE)
                before = self.last_seq
                for raw in stored:
                    frame = json.loads(raw)
                    seq = int(frame["seq"])
                    if seq == self.last_seq + 1:
                        self.last_seq = seq
                        self._ack_first(frame)
                        self.post(raw)
                        self._post_deferred()
                if len(stored) == REPLAY_PAGE:
                    self._drained.wait(REPLAY_DRAIN_WAIT_S)
                    continue
                if self.highest_seen <= self.last_seq:
                    self._post_deferred()
                    return
                stuck = 0 if self.last_seq > before else stuck + 1
                if stuck >= RESYNC_TRIES:  # rung but not in the log: it expired or was deleted
                    log.warning("messages %d-%d of %s are missing from its log; skipping them",
                                self.last_seq + 1, self.highest_seen, self.conversation)
                    self.last_seq = self.highest_seen
                    self._post_deferred()
                    return
                gevent.sleep(RESYNC_RETRY_S)
        except Exception:  # noqa: BLE001 - Redis failed: look again in a moment
            log.warning("could not read the log of %s", self.conversation, exc_info=True)
            if self.highest_seen > self.last_seq:  # a gap, and no doorbell may come to fill it
                gevent.spawn_later(RESYNC_RETRY_S, self.resync_later)
        finally:
            self._resyncing = False
