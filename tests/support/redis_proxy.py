"""A loopback TCP proxy in front of a test Redis, to drop connections and fail re-dials on purpose.

`cut()` drops every connection through it at once (what a network blip or a failover does to a
worker), `lose_next_reply()` drops the connection that next gets a reply from Redis, the reply
with it (Redis ran the commands; the client never hears so), and `fail_pubsub(n)` makes the
next n handshakes of a pub/sub connection fail. redis-py
opens a connection with a PING; then the worker's main pool says HELLO 3 and its pub/sub
connection (RESP2) does not, which is how the two are told apart (a reconnect makes no PING).
"""

from __future__ import annotations

import socket
import threading

PING = b"*1\r\n$4\r\nPING\r\n"
HANDSHAKE_TIMEOUT_S = 5.0


class RedisProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.pubsub_failed = 0  # pub/sub handshakes failed on purpose so far
        self._to_fail = 0
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self._lose_reply = threading.Event()
        self.replies_lost = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def lose_next_reply(self) -> None:
        """Drop the next reply Redis sends through the proxy, and its connection."""
        self._lose_reply.set()

    def fail_pubsub(self, count: int) -> None:
        """Make the next `count` handshakes of a pub/sub connection fail."""
        with self._lock:
            self._to_fail = count

    def cut(self) -> None:
        """Drop every connection through the proxy (new ones are made as usual)."""
        with self._lock:
            sockets, self._open = self._open, []
        for sock in sockets:
            _shut(sock)

    def close(self) -> None:
        self.listener.close()
        self.cut()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        upstream = None
        try:
            client.settimeout(HANDSHAKE_TIMEOUT_S)
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port),
                                                timeout=HANDSHAKE_TIMEOUT_S)
            opening = client.recv(65536)
            if opening == PING:  # a new connection's check (not made on a reconnect)
                upstream.sendall(opening)
                client.sendall(upstream.recv(65536))
                opening = client.recv(65536)
            if b"HELLO" not in opening and self._take_failure():
                raise ConnectionAbortedError("a pub/sub handshake failed on purpose")
            upstream.sendall(opening)
        except OSError:
            for sock in (client, upstream):
                if sock is not None:
                    _shut(sock)
                    sock.close()
            return
        client.settimeout(None)
        upstream.settimeout(None)
        with self._lock:
            self._open += [client, upstream]
        threading.Thread(target=_pump, args=(client, upstream), daemon=True).start()
        threading.Thread(target=self._replies, args=(upstream, client), daemon=True).start()

    def _replies(self, upstream: socket.socket, client: socket.socket) -> None:
        try:
            while data := upstream.recv(65536):
                if self._lose_reply.is_set():
                    self._lose_reply.clear()
                    self.replies_lost += 1
                    break  # neither this reply nor the connection reaches the client
                client.sendall(data)
        except OSError:
            pass
        for sock in (upstream, client):
            _shut(sock)
        upstream.close()

    def _take_failure(self) -> bool:
        with self._lock:
            if self._to_fail <= 0:
                return False
            self._to_fail -= 1
            self.pubsub_failed += 1
            return True


def _pump(source: socket.socket, target: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            target.sendall(data)
    except OSError:
        pass
    for sock in (source, target):
        _shut(sock)
    source.close()  # each socket is the source of one pump


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
