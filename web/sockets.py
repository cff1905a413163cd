"""The WebSocket endpoints, on flask-sock, and the checks made before an upgrade."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, Flask, abort, current_app, request
from flask_sock import Sock

from runtime import wiring as live

from . import visitor

sock = Sock()
bp = Blueprint("sockets", __name__)


def init_app(app: Flask) -> None:
    """Bind flask-sock with the frame-size limit (over it: close 1009)."""
    app.config["SOCK_SERVER_OPTIONS"] = {
        "max_message_size": int(app.config["MAX_FRAME_BYTES"]),
        "ping_interval": None,  # the handler pings, through the socket's one writer
    }
    sock.init_app(app)
    app.register_blueprint(bp)


def origin_allowed(origin: str | None, allowed: tuple[str, ...], host: str) -> bool:
    """Tell whether a socket from `origin` may open: listed, or the server's own origin."""
    if not origin:
        return True  # non-browser clients send none (PROTOCOL.md)
    origin = origin.lower().rstrip("/")
    if allowed:
        return origin in allowed
    return urlsplit(origin).netloc == host.lower()


@bp.before_request
def check_upgrade() -> Any:
    """Refuse foreign origins with 403 before the upgrade; decline permessage-deflate."""
    if not origin_allowed(request.headers.get("Origin"),
                          tuple(current_app.config.get("ALLOWED_ORIGINS") or ()), request.host):
        abort(403, description="this origin may not open Concierge's sockets "
                               "(see ALLOWED_ORIGINS)")
    # Chat frames are small, and compression costs ~100 KB a socket (PITFALLS 5); RFC 7692
    # lets a server decline it, which it does by not seeing the offer.
    request.environ.pop("HTTP_SEC_WEBSOCKET_EXTENSIONS", None)
    if current_app.extensions.get(live.EXTENSION) is None:
        abort(503, description="no Redis configured")
    return None


@sock.route("/ws/visitor", bp=bp)
def visitor_socket(ws: Any) -> None:
    visitor.serve(ws, live.current_live())
