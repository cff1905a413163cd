"""One client's WebSocket as a transport: ordered, locked writes, batching, pings, close.

Every frame for a socket is encoded when it is queued and goes out through
its outbox, written by the loop once the queuing greenlet waits (a writer
greenlet takes over what the kernel does not take at once), and every write to the socket,
simple-websocket's own (pongs, close replies) too, takes the transport's one
lock: under gevent two greenlets writing on one socket is an error (flask-sock
#85), and whole frames go out with `sendall` (a plain `send` may write part of
a frame: simple-websocket #45). Frames queued together go out in one write.

A frame that cannot be encoded fails alone: a lone surrogate (half an emoji,
from a field a client sent) has no UTF-8, so it is sent JSON-escaped; any
other failure drops that one frame, logged, and the rest go on.

A client that stops reading is cut off without ever making the caller (often
the worker's one dispatcher) wait for it. What counts is every byte it has not
taken: the outbox plus what the kernel still holds for it (`SIOCOUTQ`; see
`_flush` for when it is read; the kernel would otherwise absorb up to tcp_wmem's 4 MiB
without a write ever blocking). Over MAX_UNREAD_BYTES, over MAX_OUTBOX
frames, or a write that cannot finish in WRITE_TIMEOUT_S, and the connection
is reset, which frees what the kernel held for it (docs/protocol.md, "Slow
readers"; docs/operating.md, "Sockets and shutdown").

Frames are read in the socket's own greenlet (`receive`), not in a reader thread of
simple-websocket's: a thread per socket cost a greenlet, its stack and a switch per frame. A
client's frames wait in the kernel while its handler works, so a flood meets TCP's back-pressure
instead of a growing buffer; the pings and close frames it sends are answered when the handler
reads next (docs/operating.md, "Sockets and shutdown").

What the socket carries (one conversation's feed, or many) is web/feeds.py.
"""

from __future__ import annotations

import copy
import fcntl
import logging
import socket
import struct
import termios
import threading
import time
from typing import Any

import gevent
import gevent.event
import gevent.socket
from simple_websocket import ConnectionClosed
from wsproto.connection import ConnectionState
from wsproto.events import CloseConnection, Message, Ping, Pong, TextMessage
from wsproto.frame_protocol import CloseReason
from wsproto.utilities import LocalProtocolError

from chat import frames

log = logging.getLogger("concierge.sockets")

MAX_OUTBOX = 2_000  # frames queued for a client that does not read; then it is cut off
# Bytes a client has not taken (outbox + kernel send queue); then it is cut off. Above what a
# replay keeps unread (web/feeds.py pauses at 1.25 MiB), far below the 4 MiB the kernel holds.
MAX_UNREAD_BYTES = 2 * 1024 * 1024
WRITE_BATCH = 64  # frames joined into one write: an answer is an ack, an echo and a few messages
WRITE_TIMEOUT_S = 10.0  # a client whose socket takes no bytes for this long is gone
TAKEN_POLL_S = 0.05  # while waiting for a reader to take its bytes: the kernel has no event for it
WRITE_ERRORS = (OSError, ConnectionClosed, LocalProtocolError, gevent.Timeout)
# Linux's SIOCOUTQ (the same number as TIOCOUTQ): bytes in a socket's send queue that the peer
# has not acknowledged. Elsewhere only the outbox counts.
OUTQ = getattr(termios, "TIOCOUTQ", None)
TOO_MANY_CONTROL = "too many pings or message fragments"
HELD_MESSAGES = 64  # a client's messages read while its handler waits on a replay, kept for later
CLOSE_BACKLOG_BYTES = 64 * 1024  # unsent at a close: the client is not reading; reset instead
RESET_ON_CLOSE = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close sends a reset, drops the queue


class RateLimit:
    """A token bucket: `rate` a second sustained, bursts up to twice that."""

    __slots__ = ("rate", "capacity", "tokens", "stamp")

    def __init__(self, rate: int) -> None:
        self.rate = float(rate)
        self.capacity = 2.0 * rate
        self.tokens = self.capacity
        self.stamp = time.monotonic()

    def allow(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


class NoReaderThread:
    """What simple-websocket gets for its reader thread: one that never starts, since the
    socket's handler reads its frames itself (Transport.receive)."""

    __slots__ = ("name",)

    def __init__(self, target: Any = None, **_: Any) -> None:
        self.name = "no reader thread (_thread)"

    def start(self) -> None:
        pass


def hand_off(ws: Any) -> Any:
    """Return a copy of an upgraded socket that outlives its request, on a dup of its file.

    The request's greenlet may then return: gunicorn closes its file and frees what it and
    Flask kept for the request, flask-sock's close after the handler finds `ws` closed and
    sends nothing, and the copy goes on with the connection (its session closes the dup).
    A session on a greenlet of its own, spawned at the bottom of the stack, keeps ~8 KB less
    while it waits (docs/operating.md, "Memory and pauses").
    """
    twin = copy.copy(ws)
    twin.sock = ws.sock.dup()
    ws.connected = False
    return twin


CLOSE_REPLY_S = 1.0  # how long a socket refused at once waits for the client's close frame


def await_close_reply(ws: Any, timeout: float = CLOSE_REPLY_S) -> None:
    """After a close frame sent on a socket that never became a session (a refused origin),
    read until the client's own close frame comes (or `timeout`, or its end). Closed at once,
    the connection would still get that reply, and a socket closed with unread bytes sends a
    reset, with which the client's kernel may drop our close frame before the page reads it:
    the page then sees 1006 and tries again, instead of 1008 and stopping."""
    deadline = time.monotonic() + timeout
    try:
        while (left := deadline - time.monotonic()) > 0:
            ws.sock.settimeout(left)
            data = ws.sock.recv(4096)
            if not data:
                return
            ws.ws.receive_data(data)
            if any(isinstance(event, CloseConnection) for event in ws.ws.events()):
                return
    except (OSError, LocalProtocolError):  # a timeout, a reset, bytes that are no frames
        pass


def send_now(sock: Any, data: bytes) -> int:
    """Write what the kernel takes of `data` at once (gevent's send with 0.0 never waits);
    return how many bytes that was."""
    try:
        return sock.send(data, 0, 0.0)
    except BlockingIOError:
        return 0


class _LockedSocket:
    """The socket as simple-websocket sees it: its writes take the transport's lock."""

    __slots__ = ("_sock", "_lock")

    def __init__(self, sock: Any, lock: Any) -> None:
        self._sock = sock
        self._lock = lock

    def send(self, data: bytes) -> int:
        with self._lock:
            # Mostly the kernel takes it all at once: then no timer is armed for the write.
            sent = send_now(self._sock, data)
            if sent < len(data):
                with gevent.Timeout(WRITE_TIMEOUT_S):
                    self._sock.sendall(memoryview(data)[sent:])
        return len(data)

    sendall = send

    def __getattr__(self, name: str) -> Any:  # recv, close, fileno… go to the socket
        return getattr(self._sock, name)


def kernel_unsent(sock: Any) -> int:
    """Return the bytes the kernel holds for `sock` that its peer has not taken (0 if unknown)."""
    if OUTQ is None:
        return 0
    try:
        return struct.unpack("i", fcntl.ioctl(sock.fileno(), OUTQ, b"\0\0\0\0"))[0]
    except (OSError, ValueError):  # closed meanwhile (fileno -1)
        return 0


class Transport:
    """A live client socket: queue frames, and they go out in order, or the client is cut off."""

    # One per socket, 10,000 a worker: no per-instance dict (docs/operating.md, "Memory").
    __slots__ = ("ws", "label", "closed", "_lock", "_raw", "_outbox", "_outbox_bytes",
                 "_kernel_bytes", "_writing", "_drained", "_reading", "_owner", "_parts",
                 "_part_chars", "control_rate", "__weakref__")

    def __init__(self, ws: Any, label: str = "a client") -> None:
        self.ws = ws
        self.label = label  # who is on the other end, for the log ("visitor of c_…")
        self.closed = False
        self._lock = threading.RLock()  # the socket's writes (a greenlet lock under gevent)
        self._raw = ws.sock
        # The handshake is over: wsproto's connection speaks the same send / receive_data /
        # events, and what the handshake kept (h11's parser, the request: ~2.5 KB) goes.
        if getattr(ws.ws, "connection", None) is not None:
            ws.ws = ws.ws.connection
        ws.sock = _LockedSocket(ws.sock, self._lock)
        # A list, not a deque: an empty deque costs ~760 bytes, a list 56, on 10,000 idle sockets.
        self._outbox: list[bytes] = []
        self._outbox_bytes = 0
        self._kernel_bytes = 0  # the kernel's unsent bytes, as read after the last write
        self._writing = False
        self._drained = gevent.event.Event()  # set while the outbox is empty
        self._drained.set()
        self._reading = False  # the handler waits in `receive` for the client's bytes
        self._owner: Any = None  # the greenlet that reads the socket: its handler
        self._parts: list[Any] = []  # the message being read, its parts so far
        self._part_chars = 0
        # Pings, pongs and fragments a second the client may send (web/reader.py sets it)
        self.control_rate: RateLimit | None = None

    # --- reading -------------------------------------------------------------------------

    def receive(self, timeout: float) -> str | bytes | None:
        """Return the client's next message; None if nothing came for `timeout` seconds.

        Only the socket's handler calls it. Raises ConnectionClosed once the client closed or
        went away, or the socket was closed here (`close` wakes a handler waiting in here).
        """
        ws = self.ws
        self._owner = gevent.getcurrent()
        while True:
            if ws.input_buffer:
                return ws.input_buffer.pop(0)
            if not ws.connected or self.closed:
                raise ConnectionClosed(ws.close_reason, ws.close_message)
            if not self._take(timeout):
                return None

    def _take(self, timeout: float) -> bool:
        """Read what the client sent and act on it: answer pings and close frames, queue whole
        messages, refuse one over the size limit (1009). False if nothing came in time."""
        ws = self.ws
        data = self._read(timeout)
        if data is None:
            return False
        if not data:  # the client's end is shut, or the connection reset
            ws.connected = False
            return True
        try:
            ws.ws.receive_data(data)
            self._act()
        except (LocalProtocolError, OSError):  # bytes wsproto cannot take; or a reset
            ws.connected = False
        return True

    def _act(self) -> None:
        """Act on the frames read so far, as simple-websocket's reader would, and count what
        carries no message (pings, pongs, a message's fragments) against `control_rate`: a
        client flooding those is closed with 1008, for its handler would otherwise do nothing
        else (each costs a little, and none is a message the frame rate limit counts)."""
        ws = self.ws
        replies: list[bytes] = []
        for event in ws.ws.events():
            if isinstance(event, Message):  # a text or binary message, or a part of one
                self._part_chars += len(event.data)
                if ws.max_message_size and self._part_chars > ws.max_message_size:
                    replies.append(ws.ws.send(CloseConnection(CloseReason.MESSAGE_TOO_BIG,
                                                              "Message is too big")))
                    ws.connected = False
                    break
                self._parts.append(event.data)
                if event.message_finished:
                    parts, self._parts, self._part_chars = self._parts, [], 0
                    ws.input_buffer.append(parts[0] if len(parts) == 1 else
                                           type(parts[0])().join(parts))
                    continue
                if not event.frame_finished:
                    continue  # the rest of this frame is still on its way
            elif isinstance(event, Ping):
                replies.append(ws.ws.send(event.response()))
            elif isinstance(event, Pong):
                ws.pong_received = True
            elif isinstance(event, CloseConnection):  # the client's close, or a protocol error
                ws.close_reason, ws.close_message = event.code, event.reason
                replies.append(ws.ws.send(event.response()))
                ws.connected = False
                break
            else:
                continue
            if self.control_rate is not None and not self.control_rate.allow():
                log.warning("%s sends more pings, pongs or fragments than %g a second; closing",
                            self.label, self.control_rate.rate)
                replies.append(ws.ws.send(CloseConnection(frames.CLOSE_POLICY,
                                                          TOO_MANY_CONTROL)))
                ws.connected = False
                break
        if replies:
            try:
                self.ws.sock.sendall(b"".join(replies))
            except WRITE_ERRORS:  # it does not read what it asked for (its pongs)
                self.cut_off("its pongs cannot be written")

    def _read(self, timeout: float) -> bytes | None:
        """Read what the client sent (b"" at its end); None after `timeout` with nothing."""
        # A fresh timer each time: a gevent Timeout stopped and started again was measured to
        # fire on its first deadline, and at once after it had expired once.
        quiet = gevent.Timeout(timeout)
        self._reading = True
        quiet.start()
        try:
            return self._raw.recv(self.ws.receive_bytes)
        except gevent.Timeout as exc:
            if exc is not quiet:
                raise
            return None
        except OSError:  # reset, or the socket closed here meanwhile
            return b""
        finally:
            quiet.close()
            self._reading = False

    def _pause(self, seconds: float) -> None:
        """Let `seconds` pass; the handler reads meanwhile, so that a client's pings are
        answered and its close is seen while a replay waits for it (at most HELD_MESSAGES of
        its messages are held for later: then it waits, and TCP holds the rest)."""
        if gevent.getcurrent() is self._owner and not self._reading and \
                len(self.ws.input_buffer) < HELD_MESSAGES:
            try:
                self._take(seconds)
            except ConnectionClosed:  # closed here meanwhile (`_wake_reader`): the wait ends
                pass
        else:
            gevent.sleep(seconds)

    def _wake_reader(self) -> None:
        """Wake a handler waiting for the client's bytes: the socket is closed here."""
        if self._reading:
            watcher = getattr(self._raw, "_read_event", None)  # gevent's socket waits on it
            if watcher is not None:
                gevent.socket.cancel_wait(watcher, ConnectionClosed(self.ws.close_reason,
                                                                    self.ws.close_message))

    # --- writing -------------------------------------------------------------------------

    def send(self, frame: dict[str, Any]) -> None:
        """Queue a frame for this client."""
        try:
            text = frames.dump(frame)
        except (TypeError, ValueError):  # a frame built wrong: that frame alone is lost
            log.exception("a frame for %s cannot be written as JSON; dropped", self.label)
            return
        self.post(text)

    def post(self, text: str) -> None:
        """Queue a frame already written as JSON text."""
        if self.closed:
            return
        data = self._encode(text)
        if data is None:
            return
        if len(self._outbox) >= MAX_OUTBOX:
            self.cut_off(f"{MAX_OUTBOX} frames waiting")
            return
        waiting = self._outbox_bytes + len(data)
        # The kernel's count is an upper bound as of the last write: read it afresh before
        # giving up.
        if waiting + self._kernel_bytes > MAX_UNREAD_BYTES and \
                self._cut_off_if_unread(waiting + self.kernel_bytes()):
            return
        self._outbox.append(data)
        self._outbox_bytes += len(data)
        self._drained.clear()
        if not self._writing:
            self._writing = True
            # Written once this greenlet waits (a callback never switches, so frames keep their
            # order, and all queued meanwhile go in one write), by the loop itself: no greenlet
            # unless the kernel cannot take it all at once.
            gevent.get_hub().loop.run_callback(self._flush)

    def _encode(self, text: str) -> bytes | None:
        """Make one frame's bytes on the wire; a frame that cannot be made fails alone."""
        if self.ws.ws.state is ConnectionState.OPEN:
            # What wsproto writes for a whole text message from a server (unmasked, and no
            # extension: compression is declined), without its events and checks per frame.
            try:
                payload = text.encode()
            except UnicodeEncodeError:
                pass  # wsproto's path below, which says why and escapes it
            else:
                size = len(payload)
                if size < 126:
                    return bytes((0x81, size)) + payload
                if size < 65_536:
                    return struct.pack("!BBH", 0x81, 126, size) + payload
                return struct.pack("!BBQ", 0x81, 127, size) + payload
        try:
            try:
                return self.ws.ws.send(TextMessage(data=text))
            except UnicodeEncodeError:
                # Only a lone surrogate has no UTF-8, and in JSON text it can only stand inside
                # a string, where its escape (what backslashreplace writes: \ud83d) means the same.
                log.warning("a frame for %s holds a lone surrogate; sent escaped", self.label)
                return self.ws.ws.send(TextMessage(
                    data=text.encode("utf-8", "backslashreplace").decode("utf-8")))
        except LocalProtocolError:  # closing: wsproto takes no more frames
            return None
        except Exception:  # noqa: BLE001 - one bad frame must not take the writer down
            log.exception("a frame for %s cannot be encoded; dropped", self.label)
            return None

    def _flush(self) -> None:
        """Write the outbox without waiting, from the loop; what the kernel does not take at
        once (or a write already under way) is left to a writer greenlet, `_drain`.

        The kernel's count is not read after each write here: what was written is added to
        the last count read, an upper bound (the client only takes bytes away), and read afresh
        only once that bound passes MAX_UNREAD_BYTES.
        """
        try:
            if self.closed or not self._outbox:
                self._done_writing()
                return
            if not self.ws.connected or not self._lock.acquire(blocking=False):
                gevent.spawn(self._drain)  # a pong or a close is being written: wait for it
                return
            try:
                data = self._outbox[0] if len(self._outbox) == 1 else b"".join(self._outbox)
                sent = send_now(self._raw, data)
            finally:
                self._lock.release()
            self._kernel_bytes += sent
            if sent == len(data):
                self._outbox.clear()
                self._outbox_bytes = 0
                if self._kernel_bytes > MAX_UNREAD_BYTES:
                    self._cut_off_if_unread(self.kernel_bytes())
                self._done_writing()
                return
            self._outbox[:] = [data[sent:]]
            self._outbox_bytes = len(data) - sent
            gevent.spawn(self._drain)
        except WRITE_ERRORS:  # the client went away
            self._abort()
            self._done_writing()
        except Exception:  # noqa: BLE001 - in the loop: nothing may escape
            log.exception("writing to %s failed", self.label)
            self._abort()
            self._done_writing()

    def _cut_off_if_unread(self, unread: int) -> bool:
        """Cut the client off if `unread` bytes are more than it may leave untaken."""
        if unread <= MAX_UNREAD_BYTES:
            return False
        self.cut_off(f"more than {MAX_UNREAD_BYTES} bytes unread")
        return True

    def _done_writing(self) -> None:
        self._writing = False
        self._drained.set()

    def _drain(self) -> None:
        try:
            while self._outbox and not self.closed:
                batch = self._outbox[:WRITE_BATCH]
                del self._outbox[:WRITE_BATCH]
                self._outbox_bytes -= sum(map(len, batch))
                with self._lock:  # frames queued together go out in one write
                    self._write(b"".join(batch))
                self._cut_off_if_unread(self.kernel_bytes() + self._outbox_bytes)
        except WRITE_ERRORS:  # the client went away, or stopped reading
            self._abort()
        finally:
            # No switch happens between the empty check and this line under gevent, so no
            # frame can be left behind (sockets are served by gevent workers only).
            self._done_writing()

    def _write(self, data: bytes) -> None:
        if not self.ws.connected:
            raise ConnectionClosed(self.ws.close_reason, self.ws.close_message)
        self.ws.sock.sendall(data)

    def kernel_bytes(self) -> int:
        """Read how many bytes written to the socket its client has not taken yet."""
        self._kernel_bytes = kernel_unsent(self._raw)
        return self._kernel_bytes

    def unread_bytes(self) -> int:
        """Return the bytes queued for this client that it has not taken yet (outbox + kernel)."""
        return self._outbox_bytes + self.kernel_bytes()

    @property
    def open(self) -> bool:
        """Whether the connection is still up (neither end has closed it)."""
        return not self.closed and self.ws.connected

    def wait_taken(self, low_bytes: int, timeout: float) -> bool:
        """Wait until the client has taken all but `low_bytes`; False if it did not in time.
        The socket's handler goes on reading while it waits (`_pause`)."""
        deadline = time.monotonic() + timeout
        while self.open:
            if self._drained.is_set() and self.unread_bytes() <= low_bytes:
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._pause(min(TAKEN_POLL_S, left))
        return False

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

    # --- closing -------------------------------------------------------------------------

    def cut_off(self, why: str) -> None:
        """Give up on a client that reads too slowly: reset its connection, without waiting."""
        if self.closed:
            return
        log.warning("%s reads too slowly (%s); cutting it off", self.label, why)
        self._abort()  # a close frame would wait behind all it has not read

    def close(self, code: int, reason: str = "", flush_s: float = 0.0) -> None:
        """Send a close frame (once) and wake the handler waiting on the socket.

        With `flush_s`, the frames already queued (an error saying why) go first, for at most
        that long. If a write is stuck on a client that does not read, there is no waiting
        behind it: the connection is reset, which fails that write.
        """
        if flush_s and not self.closed:
            self._drained.wait(flush_s)
        if not self.closed or self.ws.connected:
            self.closed = True
            if self._lock.acquire(blocking=False):
                try:
                    if self.ws.connected:
                        self.ws.sock.sendall(self.ws.ws.send(CloseConnection(code, reason)))
                    if self.kernel_bytes() > CLOSE_BACKLOG_BYTES:
                        # The client is not reading (it stopped answering pings, say): the close
                        # frame waits behind all it left, and closing would leave the kernel an
                        # orphan holding that for minutes. A zero linger resets instead.
                        self._raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                             RESET_ON_CLOSE)
                except (*WRITE_ERRORS, Exception):  # noqa: BLE001 - closing, whatever state
                    pass
                finally:
                    self._lock.release()
            else:
                self._abort()
        self.ws.connected = False
        self._wake_reader()

    def _abort(self) -> None:
        """Cut the connection at once (a client that stopped reading gets no close frame).

        Never blocks, so any greenlet may call it. With a zero linger the socket's close resets
        the connection, and the kernel frees what it still held for the client at once instead
        of keeping it while it tries to deliver it.
        """
        self.closed = True
        try:
            self._raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, RESET_ON_CLOSE)
            self._raw.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.ws.connected = False
        self._wake_reader()

