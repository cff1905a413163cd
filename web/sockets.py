"""The WebSocket endpoints, on flask-sock, and the checks made before and right after an upgrade."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flask import Blueprint, Flask, Response, current_app, request
from flask_sock import Sock
from werkzeug.routing import WebsocketMismatch

from chat import frames
from runtime import wiring as live

from . import limits, upgrade, visitor

sock = Sock()
bp = Blueprint("sockets", __name__)

OWN_ORIGINS = "concierge.own_origins"


def init_app(app: Flask) -> None:
    """Bind flask-sock with the frame-size limit (over it: close 1009), and the address limits."""
    app.config["SOCK_SERVER_OPTIONS"] = {
        "max_message_size": int(app.config["MAX_FRAME_BYTES"]),
        "ping_interval": None,  # the handler pings, through the socket's one writer
    }
    app.extensions[OWN_ORIGINS] = upgrade.own_origins(int(app.config["PORT"]),
                                                      app.config["SELF_URL"])
    parts = app.extensions.get(live.EXTENSION)
    app.extensions[limits.EXTENSION] = None if parts is None else limits.AddressLimits(
        parts.redis, app.config["REDIS_PREFIX"],
        max_sockets=int(app.config["MAX_SOCKETS_PER_ADDRESS"]),
        new_conversations=int(app.config["NEW_CONVERSATIONS_PER_ADDRESS"]))
    sock.init_app(app)
    app.register_blueprint(bp)


def _is_socket_request() -> bool:
    """Tell whether the request is for a socket path, well-formed upgrade or not."""
    rule = request.url_rule
    if rule is not None:
        return bool(rule.websocket)
    # A request that is no upgrade at all does not match a socket route: werkzeug says so.
    return isinstance(request.routing_exception, WebsocketMismatch) and any(
        r.websocket and r.rule == request.path for r in current_app.url_map.iter_rules())


def _refuse(status: int, text: str, headers: dict[str, str] | None = None) -> Response:
    return Response(text + "\n", status, headers, mimetype="text/plain")


@bp.before_app_request
def check_upgrade() -> Any:
    """Answer a malformed handshake with 400/426 and a foreign origin with 403, before the
    upgrade; decline permessage-deflate."""
    if not _is_socket_request():
        return None
    refusal = upgrade.handshake_refusal(request.method, request.headers)
    if refusal is not None:
        return _refuse(refusal.status, refusal.text, refusal.headers)
    if not upgrade.origin_allowed(request.headers.get("Origin"),
                                  tuple(current_app.config.get("ALLOWED_ORIGINS") or ()),
                                  current_app.extensions[OWN_ORIGINS]):
        return _refuse(403, "this origin may not open Concierge's sockets (see ALLOWED_ORIGINS)")
    # Chat frames are small, and compression costs ~100 KB a socket (docs/protocol.md); RFC 7692
    # lets a server decline it, which it does by not seeing the offer.
    request.environ.pop("HTTP_SEC_WEBSOCKET_EXTENSIONS", None)
    if current_app.extensions.get(live.EXTENSION) is None:
        return _refuse(503, "no Redis configured")
    return None


@contextmanager
def admitted(ws: Any) -> Iterator[str | None]:
    """Hold the socket's place in its address's count; yield the address, or None for a
    socket past the limit, which is closed with 1013 at once (a browser sees a close code,
    never the status of a refused upgrade)."""
    address = request.remote_addr or "unknown"
    with limits.current().socket(address) as allowed:
        if not allowed:
            ws.close(reason=frames.CLOSE_TRY_LATER, message=limits.TOO_MANY_SOCKETS)
        yield address if allowed else None


@sock.route("/ws/visitor", bp=bp)
def visitor_socket(ws: Any) -> None:
    with admitted(ws) as address:
        if address is not None:
            visitor.serve(ws, live.current_live(), limits.current(), address)
