"""A visitor socket on a plain TCP socket, for clients that misbehave on purpose.

`RawSocket` does the WebSocket handshake itself (with wsproto) and reads only when the test says
so: it can stop reading altogether (optionally with a tiny receive buffer), send ping frames of
its own, and tell how the server ended the connection (a close frame, EOF or a reset).
`server_side` reads the kernel's view of the server's end of such a connection (Linux
/proc/net/tcp): whether it is still established, and what waits in its queues.
"""

from __future__ import annotations

import json
import socket
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Ping,
    Pong,
    RejectConnection,
    Request,
    TextMessage,
)

from tests.support.ws import RECEIVE_TIMEOUT_S, Frame, Predicate

READ_CHUNK = 256 * 1024


class RawSocket:
    """A client WebSocket that reads nothing unless asked; JSON frames in `frames`."""

    def __init__(self, base_url: str, path: str = "/ws/visitor", *,
                 rcvbuf: int | None = None, headers: dict[str, str] | None = None) -> None:
        parts = urlsplit(base_url)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:  # before connect, so the window offered stays that small
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(RECEIVE_TIMEOUT_S)
        self.sock.connect((parts.hostname, parts.port))
        self.local_port = self.sock.getsockname()[1]
        self.server_port = parts.port
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.frames: list[Frame] = []  # every JSON frame received, in order
        self.pongs: list[bytes] = []  # payloads of the pong frames received
        self.pings = 0  # the server's keep-alive pings received (each answered)
        self.ended: str | None = None  # "close <code>", "eof" or "reset" once the server ended it
        self.accepted = False
        self._text = ""
        extra = [(name.encode(), value.encode()) for name, value in (headers or {}).items()]
        self.sock.sendall(self.ws.send(Request(host=parts.netloc, target=path,
                                               extra_headers=extra)))
        deadline = time.monotonic() + RECEIVE_TIMEOUT_S
        while not self.accepted:
            if self.ended or time.monotonic() > deadline:
                raise AssertionError(f"no WebSocket upgrade from {base_url}{path}")
            self.read(deadline - time.monotonic())

    # --- sending -------------------------------------------------------------------------------

    def send(self, frame: Frame) -> None:
        self.sock.sendall(self.ws.send(TextMessage(data=json.dumps(frame))))

    def send_ping(self, payload: bytes) -> None:
        """Send a WebSocket ping frame (not the protocol's JSON `ping`)."""
        self.sock.sendall(self.ws.send(Ping(payload=payload)))

    # --- receiving -----------------------------------------------------------------------------

    def read(self, timeout: float) -> bool:
        """Read what arrives within `timeout` (one recv); return False once the server ended it."""
        if self.ended:
            return False
        self.sock.settimeout(max(timeout, 0.001))
        try:
            data = self.sock.recv(READ_CHUNK)
        except TimeoutError:
            return True
        except ConnectionResetError:
            self.ended = "reset"
            return False
        if not data:
            self.ended = self.ended or "eof"
            return False
        self.ws.receive_data(data)
        for event in self.ws.events():
            self._take(event)
        return not self.ended

    def _take(self, event: Any) -> None:
        if isinstance(event, AcceptConnection):
            self.accepted = True
        elif isinstance(event, RejectConnection):
            self.ended = f"rejected {event.status_code}"
        elif isinstance(event, TextMessage):
            self._text += event.data
            if event.message_finished:
                self.frames.append(json.loads(self._text))
                self._text = ""
        elif isinstance(event, Ping):  # the server's keep-alive: answer, as a browser does
            self.pings += 1
            self.sock.sendall(self.ws.send(event.response()))
        elif isinstance(event, Pong):
            self.pongs.append(bytes(event.payload))
        elif isinstance(event, CloseConnection):
            self.ended = f"close {event.code}"

    def receive_until(self, predicate: Predicate, timeout: float = RECEIVE_TIMEOUT_S
                      ) -> list[Frame]:
        """Read until a frame (received now or before) matches; return every frame so far."""
        deadline = time.monotonic() + timeout
        while not any(predicate(frame) for frame in self.frames):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self.read(remaining):
                raise AssertionError(f"no matching frame within {timeout:.1f} s (ended: "
                                     f"{self.ended}); {len(self.frames)} frames, the last: "
                                     f"{self.frames[-3:]}")
        return self.frames

    def wait_pong(self, payload: bytes, timeout: float = RECEIVE_TIMEOUT_S) -> None:
        """Read until a pong frame carrying `payload` has come."""
        deadline = time.monotonic() + timeout
        while payload not in self.pongs:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self.read(remaining):
                raise AssertionError(f"no pong for {payload!r} within {timeout:.1f} s (ended: "
                                     f"{self.ended}); pongs: {self.pongs}")

    def read_to_end(self, timeout: float = RECEIVE_TIMEOUT_S) -> str:
        """Read everything until the server ends the connection; return how it ended."""
        deadline = time.monotonic() + timeout
        while self.read(deadline - time.monotonic()):
            if time.monotonic() > deadline:
                raise AssertionError(f"the connection is still open after {timeout:.1f} s; "
                                     f"{len(self.frames)} frames read")
        return self.ended or ""

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


# --- the server's end, as the kernel sees it ---------------------------------------------------

TCP_STATES = {"01": "ESTABLISHED", "02": "SYN_SENT", "03": "SYN_RECV", "04": "FIN_WAIT1",
              "05": "FIN_WAIT2", "06": "TIME_WAIT", "07": "CLOSE", "08": "CLOSE_WAIT",
              "09": "LAST_ACK", "0A": "LISTEN", "0B": "CLOSING"}


@dataclass
class TcpEnd:
    state: str  # ESTABLISHED, FIN_WAIT1, …
    tx_queue: int  # bytes sent and not yet acknowledged by the peer
    rx_queue: int  # bytes received and not yet read by the application


def _loopback(port: int) -> str:
    return f"0100007F:{port:04X}"  # 127.0.0.1, as /proc/net/tcp spells it


def server_side(client: RawSocket) -> TcpEnd | None:
    """Return the server's end of `client`'s connection (None once the kernel forgot it)."""
    local, remote = _loopback(client.server_port), _loopback(client.local_port)
    with open("/proc/net/tcp") as table:
        for line in table.readlines()[1:]:
            fields = line.split()
            if fields[1] == local and fields[2] == remote:
                tx, rx = fields[4].split(":")
                return TcpEnd(TCP_STATES.get(fields[3], fields[3]), int(tx, 16), int(rx, 16))
    return None
