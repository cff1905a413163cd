"""A small WebSocket client for the socket tests: JSON frames in, bounded waits, close codes out.

`Socket` wraps simple-websocket's synchronous client; `VisitorSocket` adds the visitor protocol's
`hello` and `message`. `handshake` makes a raw HTTP upgrade, to look at what the server answers
before any WebSocket exists (the status of a malformed upgrade, the extensions it accepts).
`assert_origin_refused` checks what a page of an origin not allowed gets.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from simple_websocket import Client, ConnectionClosed
from wsproto.events import CloseConnection, TextMessage

RECEIVE_TIMEOUT_S = 10.0  # a frame the server owes us; far above what any answer takes, even loaded
CLOSE_TIMEOUT_S = 10.0
ABNORMAL_CLOSURE = 1006  # no close frame arrived (simple-websocket itself reports 1005 then)

Frame = dict[str, Any]
Predicate = Callable[[Frame], bool]


class SocketClosed(AssertionError):
    """The server closed the socket while a frame was awaited."""

    def __init__(self, code: int | None, frames: list[Frame]) -> None:
        super().__init__(f"the server closed the socket ({code}); frames so far: {frames}")
        self.code = code


def ws_url(base_url: str, path: str) -> str:
    """Turn the server's http:// base URL into the ws:// URL of `path`."""
    return "ws" + base_url.removeprefix("http") + path


def new_id() -> str:
    """Make a client message id, as the widget does."""
    return "v_" + uuid.uuid4().hex[:16]


class Socket:
    """A client WebSocket that sends and receives JSON frames, and keeps every frame it got."""

    def __init__(self, base_url: str, path: str, headers: dict[str, str] | None = None) -> None:
        self.ws = Client.connect(ws_url(base_url, path), headers=headers)
        self.frames: list[Frame] = []  # every frame received, in order

    # --- sending -------------------------------------------------------------------------------

    def send(self, frame: Frame) -> None:
        self.send_text(json.dumps(frame))

    def send_text(self, text: str | bytes) -> None:
        try:
            self.ws.send(text)
        except (ConnectionClosed, OSError):
            raise SocketClosed(self.close_code, self.frames) from None

    # --- receiving -----------------------------------------------------------------------------

    def receive(self, timeout: float = RECEIVE_TIMEOUT_S) -> Frame:
        """Return the next frame; fail if none comes within `timeout` or the socket closes."""
        try:
            raw = self.ws.receive(timeout=max(timeout, 0.0))
        except ConnectionClosed:
            raise SocketClosed(self.close_code, self.frames) from None
        if raw is None:
            raise AssertionError(f"no frame within {timeout:.1f} s; frames so far: {self.frames}")
        frame = json.loads(raw)
        self.frames.append(frame)
        return frame

    def receive_until(self, predicate: Predicate, timeout: float = RECEIVE_TIMEOUT_S
                      ) -> list[Frame]:
        """Return the frames received up to and including the first one matching `predicate`."""
        deadline = time.monotonic() + timeout
        got: list[Frame] = []
        while True:
            frame = self.receive(deadline - time.monotonic())
            got.append(frame)
            if predicate(frame):
                return got

    def wait_closed(self, timeout: float = CLOSE_TIMEOUT_S) -> int:
        """Read until the server closes the socket; return the close code (1006: no close frame)."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"the socket is still open after {timeout:.1f} s; "
                                     f"frames so far: {self.frames}")
            try:
                raw = self.ws.receive(timeout=remaining)
            except ConnectionClosed:
                return self.close_code
            if raw is not None:
                self.frames.append(json.loads(raw))

    @property
    def open(self) -> bool:
        return bool(self.ws.connected)

    @property
    def close_code(self) -> int | None:
        """The code the server closed with; None while open, 1006 when no close frame came."""
        if self.ws.connected:
            return None
        code = int(self.ws.close_reason)
        if code == 1005:
            code = self._unread_close_code() or ABNORMAL_CLOSURE
        return code

    def _unread_close_code(self) -> int | None:
        """Find a close frame simple-websocket received but never parsed.

        Its client reads the 101 response and whatever follows it in the same packet; when that
        is a close frame (a server that closes at once, as with 1013), it stays in wsproto's
        buffer, and the reader thread stops at the end of the stream without looking there. Only
        called once the reader has stopped, so nothing else reads the buffer.
        """
        for event in self.ws.ws.events():
            if isinstance(event, TextMessage):  # a frame sent just before the close
                self.frames.append(json.loads(event.data))
            elif isinstance(event, CloseConnection):
                self.ws.close_reason = event.code
                return int(event.code)
        return None

    def close(self) -> None:
        """Close from the client side (1000), if still open."""
        try:
            self.ws.close()
        except (ConnectionClosed, OSError):
            pass


# --- the visitor socket ------------------------------------------------------------------------


@dataclass
class Greeting:
    """What the server sends after `hello`: errors, welcome, the replayed messages, status."""

    frames: list[Frame]
    errors: list[Frame] = field(init=False)
    welcome: Frame = field(init=False)
    messages: list[Frame] = field(init=False)
    status: Frame = field(init=False)

    def __post_init__(self) -> None:
        kinds = [frame["type"] for frame in self.frames]
        assert "welcome" in kinds, f"no welcome after hello: {self.frames}"
        at = kinds.index("welcome")
        self.errors = self.frames[:at]
        assert all(kind == "error" for kind in kinds[:at]), self.frames
        self.welcome = self.frames[at]
        self.messages = self.frames[at + 1:-1]
        assert all(frame["type"] == "message" for frame in self.messages), self.frames
        self.status = self.frames[-1]

    @property
    def token(self) -> str:
        return self.welcome["token"]

    @property
    def conversation(self) -> str:
        return self.welcome["conversation"]

    @property
    def last_seq(self) -> int:
        return self.messages[-1]["seq"] if self.messages else 0


class VisitorSocket(Socket):
    """A visitor's socket on `/ws/visitor`."""

    PATH = "/ws/visitor"

    def __init__(self, base_url: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(base_url, self.PATH, headers)
        self.greeting: Greeting | None = None

    def hello(self, token: str | None = None, **fields: Any) -> Greeting:
        """Say hello; return the server's answer, up to and including its `status`."""
        self.send({"type": "hello", "token": token, **fields})
        self.greeting = Greeting(self.receive_until(of_type("status")))
        return self.greeting

    def say(self, text: str, *, message_id: str | None = None, payload: str | None = None) -> str:
        """Send a visitor message; return its id."""
        message_id = message_id or new_id()
        frame: Frame = {"type": "message", "id": message_id, "text": text}
        if payload is not None:
            frame["payload"] = payload
        self.send(frame)
        return message_id

    def talk(self, text: str, until: Predicate, *, message_id: str | None = None,
             payload: str | None = None, timeout: float = RECEIVE_TIMEOUT_S) -> list[Frame]:
        """Send a message and return the frames received until `until` matches one."""
        self.say(text, message_id=message_id, payload=payload)
        return self.receive_until(until, timeout)

    @property
    def messages(self) -> list[Frame]:
        """Every message frame this socket has received, in order."""
        return [frame for frame in self.frames if frame["type"] == "message"]

    @property
    def last_seq(self) -> int:
        return max((frame["seq"] for frame in self.messages), default=0)


# --- predicates --------------------------------------------------------------------------------


def of_type(kind: str) -> Predicate:
    return lambda frame: frame.get("type") == kind


def bot_says(part: str) -> Predicate:
    """Match a bot message whose text contains `part`."""
    return lambda frame: (frame.get("type") == "message" and frame.get("from") == "bot"
                          and part in frame.get("text", ""))


def expect_error(tab: Socket, code: str, *names: str) -> Frame:
    """Read the next frame: an error with `code` whose message names each of `names`."""
    error = tab.receive()
    assert error["type"] == "error" and error["code"] == code, error
    assert error["message"], error
    for name in names:
        assert name in error["message"], error
    return error


def still_serves(tab: Socket) -> None:
    """Prove the socket still works: a ping gets its pong."""
    tab.send({"type": "ping"})
    assert tab.receive() == {"type": "pong"}


def still_takes_messages(tab: VisitorSocket) -> None:
    """Prove the conversation still works: a message is acked, echoed and answered."""
    message_id = f"ok-{time.monotonic_ns()}"
    frames = tab.talk("opening hours", message_id=message_id, until=bot_says("anything else"))
    assert frames[0] == {"type": "ack", "id": message_id, "seq": frames[1]["seq"]}, frames


def message_with_seq(seq: int) -> Predicate:
    return lambda frame: frame.get("type") == "message" and frame.get("seq") == seq


def closed_status(frame: Frame) -> bool:
    return frame.get("type") == "status" and frame.get("status") == "closed"


# --- a raw upgrade -----------------------------------------------------------------------------


@dataclass
class HandshakeResponse:
    status: int
    headers: dict[str, str]  # names lower-cased
    body: bytes


def handshake(base_url: str, path: str, headers: dict[str, str] | None = None,
              timeout: float = RECEIVE_TIMEOUT_S, *, method: str = "GET",
              drop: tuple[str, ...] = ()) -> HandshakeResponse:
    """Send a WebSocket upgrade request by hand; return the status and headers of the answer.

    `headers` are added or replace the usual ones; those named in `drop` are left out.
    """
    parts = urlsplit(base_url)
    sent = {"Host": parts.netloc, "Upgrade": "websocket", "Connection": "Upgrade",
            "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
            "Sec-WebSocket-Version": "13", **(headers or {})}
    lines = [f"{method} {path} HTTP/1.1"] + [f"{name}: {value}" for name, value in sent.items()
                                              if name not in drop]
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        answer = {name.strip().lower(): value.strip() for name, _, value in
                  (line.partition(":") for line in header_lines)}
        if int(status_line.split()[1]) != 101:
            while len(body) < int(answer.get("content-length", 0)):
                chunk = sock.recv(4096)
                if not chunk:
                    break
                body += chunk
    return HandshakeResponse(status=int(status_line.split()[1]), headers=answer, body=body)


class AgentSocket(Socket):
    """An agent's socket on `/ws/agent`, opened with an API token (or the headers given)."""

    PATH = "/ws/agent"

    def __init__(self, base_url: str, token: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        path = self.PATH if token is None else f"{self.PATH}?token={token}"
        super().__init__(base_url, path, headers)
        self.welcome: Frame | None = None

    def welcomed(self) -> Frame:
        """Read the server's `welcome` (and, for a lead, the `team` after it)."""
        self.welcome = self.receive()
        assert self.welcome["type"] == "welcome", self.welcome
        return self.welcome

    def presence(self, status: str) -> Frame:
        """Set the presence; return the `presence` frame that confirms it."""
        self.send({"type": "presence", "status": status})
        return self.receive_until(lambda f: f["type"] == "presence" and f["status"] == status)[-1]

    def say(self, conversation: str, text: str, message_id: str | None = None) -> str:
        message_id = message_id or "a_" + uuid.uuid4().hex[:16]
        self.send({"type": "message", "conversation": conversation, "id": message_id,
                   "text": text})
        return message_id

    def assigned(self, timeout: float = RECEIVE_TIMEOUT_S) -> Frame:
        """Read until the next `assigned`; return its conversation object."""
        return self.receive_until(of_type("assigned"), timeout)[-1]["conversation"]


def message_from(sender: str, text: str | None = None) -> Predicate:
    return lambda frame: (frame.get("type") == "message" and frame.get("from") == sender
                          and (text is None or text in frame.get("text", "")))


def status_is(value: str) -> Predicate:
    return lambda frame: frame.get("type") == "status" and frame.get("status") == value


# --- the agent socket's tests: matching frames, quiet spells, close reasons, a TCP proxy ---------


def frame_like(kind: str, **fields: Any) -> Predicate:
    """Match a frame of type `kind` whose named fields have these values."""
    return lambda frame: frame.get("type") == kind and all(
        frame.get(name) == value for name, value in fields.items())


def error_code(code: str) -> Predicate:
    return lambda frame: frame.get("type") == "error" and frame.get("code") == code


def about(cid: str) -> Predicate:
    """Match any frame that concerns conversation `cid` (its id, or an object with that id)."""
    def concerns(frame: Frame) -> bool:
        conversation = frame.get("conversation")
        if isinstance(conversation, dict):
            conversation = conversation.get("id")
        return conversation == cid or any(
            item.get("conversation") == cid for key in ("waiting", "conversations")
            for item in frame.get(key) or () if isinstance(item, dict))
    return concerns


def quiet_for(tab: Socket, seconds: float, unwanted: Predicate) -> list[Frame]:
    """Read whatever comes for `seconds`; fail if a frame matching `unwanted` is among it.

    Only for what must NOT happen (nothing can be awaited then); return the frames read.
    """
    deadline = time.monotonic() + seconds
    got: list[Frame] = []
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            raw = tab.ws.receive(timeout=remaining)
        except ConnectionClosed:
            raise SocketClosed(tab.close_code, tab.frames) from None
        if raw is None:
            break
        frame = json.loads(raw)
        tab.frames.append(frame)
        got.append(frame)
        assert not unwanted(frame), f"unexpected {frame}; frames so far: {tab.frames}"
    return got


def refused_close(base_url: str, path: str, headers: dict[str, str] | None = None,
                  timeout: float = RECEIVE_TIMEOUT_S) -> tuple[int, str]:
    """Open a socket the server accepts and closes at once; return its close code and reason.

    (simple-websocket's client can lose the reason of a close that came with the upgrade.)
    """
    from wsproto import ConnectionType, WSConnection  # noqa: PLC0415 - only this helper
    from wsproto.events import AcceptConnection, RejectConnection, Request  # noqa: PLC0415

    parts = urlsplit(base_url)
    connection = WSConnection(ConnectionType.CLIENT)
    extra = list((headers or {}).items())
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as sock:
        sock.sendall(connection.send(Request(host=parts.netloc, target=path,
                                             extra_headers=extra)))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            data = sock.recv(65536)
            if not data:
                raise AssertionError(f"the connection ended without a close frame ({path})")
            connection.receive_data(data)
            for event in connection.events():
                if isinstance(event, RejectConnection):
                    raise AssertionError(f"the upgrade was refused ({event.status_code})")
                if isinstance(event, CloseConnection):
                    return int(event.code), event.reason or ""
                assert isinstance(event, AcceptConnection), event
    raise AssertionError(f"no close frame within {timeout:.1f} s ({path})")


class TcpProxy:
    """A loopback TCP proxy in front of a server, for killing a client's socket without a close.

    `freeze()` stops carrying bytes either way (a network that went silent: the server's pings
    get no pong), `thaw()` carries on with what was held, `cut()` shuts every connection
    through it down at once (the server sees the end of the stream, never a close frame).
    `url` is the base URL to connect to instead of the server's.
    """

    def __init__(self, target_url: str) -> None:
        import threading  # noqa: PLC0415 - only the proxy runs threads

        parts = urlsplit(target_url)
        self._target = (parts.hostname, parts.port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._flowing = threading.Event()
        self._flowing.set()
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self._threading = threading
        threading.Thread(target=self._accept, daemon=True).start()

    def freeze(self) -> None:
        self._flowing.clear()

    def thaw(self) -> None:
        self._flowing.set()

    def cut(self) -> None:
        with self._lock:
            sockets, self._open = self._open, []
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        self._flowing.set()
        self._listener.close()
        self.cut()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
                upstream = socket.create_connection(self._target)
            except OSError:
                return
            with self._lock:
                self._open += [client, upstream]
            for source, target in ((client, upstream), (upstream, client)):
                self._threading.Thread(target=self._pump, args=(source, target),
                                       daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                self._flowing.wait()
                target.sendall(data)
        except OSError:
            pass
        for sock in (source, target):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        source.close()  # each socket is the source of one pump


def assert_origin_refused(base_url: str, origin: str) -> None:
    """Assert that a visitor socket from `origin` is told why (`forbidden`, naming
    ALLOWED_ORIGINS) and closed with 1008 at once, before any conversation."""
    tab = VisitorSocket(base_url, headers={"Origin": origin})
    assert tab.wait_closed() == 1008, tab.frames
    assert [(f["type"], f["code"]) for f in tab.frames] == [("error", "forbidden")], tab.frames
    assert "ALLOWED_ORIGINS" in tab.frames[0]["message"]
