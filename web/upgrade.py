"""Check a WebSocket upgrade before flask-sock sees it: a well-formed handshake, an allowed origin.

simple-websocket hands the request to wsproto, which raises on a handshake it cannot accept (no
`Sec-WebSocket-Version`, no key, another version): flask-sock lets that escape as an HTTP 500
with a traceback in the log. So the handshake is checked here first and refused with a status a
client can act on (docs/protocol.md, "Opening a socket").
"""

from __future__ import annotations

import binascii
from base64 import b64decode
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

WEBSOCKET_VERSION = "13"  # RFC 6455's one version; a server names it when refusing another
KEY_BYTES = 16  # RFC 6455 4.1: Sec-WebSocket-Key is 16 random bytes, base64-encoded
DEFAULT_PORTS = {"http": 80, "https": 443}
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")

Origin = tuple[str, str, int]  # scheme, host, port: what a browser's Origin header names


@dataclass(frozen=True)
class Refusal:
    """An HTTP answer to an upgrade that cannot go ahead."""

    status: int
    text: str
    headers: dict[str, str] = field(default_factory=dict)


def handshake_refusal(method: str, headers: Mapping[str, str]) -> Refusal | None:
    """Say what is wrong with a WebSocket handshake, or None when wsproto will accept it."""
    if method != "GET":
        return Refusal(400, "a WebSocket upgrade is a GET request")
    connection = {token.strip().lower() for token in headers.get("Connection", "").split(",")}
    if "upgrade" not in connection or headers.get("Upgrade", "").strip().lower() != "websocket":
        return Refusal(400, "this path speaks WebSocket only: send 'Connection: Upgrade' and "
                            "'Upgrade: websocket'")
    if not headers.get("Host"):
        return Refusal(400, "a WebSocket upgrade needs a 'Host' header")
    if headers.get("Sec-WebSocket-Version", "").strip() != WEBSOCKET_VERSION:
        return Refusal(426, f"this server speaks WebSocket version {WEBSOCKET_VERSION} only",
                       {"Sec-WebSocket-Version": WEBSOCKET_VERSION})
    if not _key_valid(headers.get("Sec-WebSocket-Key", "")):
        return Refusal(400, f"'Sec-WebSocket-Key' must be {KEY_BYTES} random bytes in base64")
    return None


def _key_valid(key: str) -> bool:
    try:
        return len(b64decode(key.strip(), validate=True)) == KEY_BYTES
    except (binascii.Error, ValueError):  # not base64, or not ASCII at all
        return False


def own_origins(port: int, self_url: str) -> frozenset[Origin]:
    """Return the origins of the server itself: loopback on its port, and SELF_URL's."""
    origins = {("http", host, port) for host in LOOPBACK_HOSTS}
    listed = parse_origin(self_url)
    if listed is not None:
        origins.add(listed)
    return frozenset(origins)


def parse_origin(text: str) -> Origin | None:
    """Return (scheme, host, port) of an http(s) origin or base URL, or None if it is not one."""
    try:
        parts = urlsplit(text.strip())
        port = parts.port  # raises ValueError when not a number, or out of range
    except ValueError:
        return None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname or parts.username is not None:
        return None
    return parts.scheme, parts.hostname, port or DEFAULT_PORTS[parts.scheme]


def origin_allowed(origin: str | None, allowed: tuple[str, ...],
                   own: frozenset[Origin]) -> bool:
    """Tell whether a socket from `origin` may open: one of ALLOWED_ORIGINS, or with none set,
    one of the server's own (scheme, host and port compared; the Host header plays no part,
    so a rebound DNS name is still a foreign origin)."""
    if not origin:
        return True  # non-browser clients send none (docs/protocol.md, "Origin")
    if allowed:
        return origin.lower().rstrip("/") in allowed
    parts = urlsplit(origin.strip())
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        return False  # a browser's Origin is scheme, host and port, nothing else
    return parse_origin(origin) in own


def console_origin(origin: str | None, host: str, own: frozenset[Origin]) -> bool:
    """Tell whether the agent socket may open from `origin`: none (a non-browser client with a
    token), the server's own, or a page served by the host the socket connects to (the console).

    ALLOWED_ORIGINS plays no part: a site carrying the widget must never open the agent socket
    with an agent's cookie. Following `Host` is safe here, unlike for the visitor socket: a page
    on a rebound name gets no cookie of ours, and a token it does not know.
    """
    if not origin:
        return True
    parts = urlsplit(origin.strip())
    if parts.path not in ("", "/") or parts.query or parts.fragment or not parts.hostname:
        return False
    if parse_origin(origin) in own:
        return True
    try:
        target = urlsplit("//" + host.strip())
        origin_port, host_port = parts.port or DEFAULT_PORTS.get(parts.scheme), target.port
    except ValueError:  # a port that is no number
        return False
    # Without a port in Host the page came through the default port of its own scheme (a
    # proxy that ends TLS may pass the request on as plain http).
    return parts.hostname == target.hostname and host_port in (None, origin_port)
