"""The WebSocket endpoints, on flask-sock, and the checks made before and right after an upgrade."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis as redis_lib
from flask import Blueprint, Flask, Response, current_app, request
from flask_login import current_user
from flask_sock import Sock
from simple_websocket import ConnectionClosed
from werkzeug.routing import WebsocketMismatch

from chat import frames
from runtime import wiring as live

from . import agent, auth, limits, transport, upgrade, visitor

log = logging.getLogger("concierge.sockets")
sock = Sock()
bp = Blueprint("sockets", __name__)

OWN_ORIGINS = "concierge.own_origins"
REFUSED_ORIGIN = "concierge.refused_origin"  # in a request's environ: its Origin, not allowed
ORIGIN_REFUSED = ("this site may not use this chat: its origin is not in the chat server's "
                  "ALLOWED_ORIGINS")
SHOWN_ORIGIN_CHARS = 200  # of a refused Origin, in the log
REFUSED_LOG_S = 60.0
_origins_told: dict[str, float] = {}  # refused origin -> when the log last said so
AGENT_PATH = "/ws/agent"
LOG_IN = ("log in first: open the console and log in, or pass an agent API token "
          "(Authorization: Bearer <token>, or ?token=<token>)")


def init_app(app: Flask) -> None:
    """Bind flask-sock with the frame-size limit (over it: close 1009), and the address limits."""
    app.config["SOCK_SERVER_OPTIONS"] = {
        "max_message_size": int(app.config["MAX_FRAME_BYTES"]),
        "ping_interval": None,  # the handler pings, through the socket's one writer
        "thread_class": transport.NoReaderThread,  # the handler reads (web/transport.py)
    }
    app.extensions[OWN_ORIGINS] = upgrade.own_origins(int(app.config["PORT"]),
                                                      app.config["SELF_URL"])
    parts = app.extensions.get(live.EXTENSION)
    app.extensions[limits.EXTENSION] = None if parts is None else limits.AddressLimits(
        parts.redis, app.config["REDIS_PREFIX"],
        max_sockets=int(app.config["MAX_SOCKETS_PER_ADDRESS"]),
        new_conversations=int(app.config["NEW_CONVERSATIONS_PER_ADDRESS"]))
    if parts is not None:  # a logout closes every socket of that agent: offline at once
        auth.on_logout(app, parts.desk.logged_out)
    sock.init_app(app)
    app.register_blueprint(bp)
    app.register_error_handler(ConnectionError, _client_gone)


def _client_gone(error: ConnectionError) -> Response:
    """A client that went away mid-request (a reset during a socket's handshake, say): one log
    line, not an error with its traceback, which any client could flood the log with."""
    log.info("%s %s: the client went away (%s)", request.method, request.path, error)
    return _refuse(400, "the connection was lost")


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
    """Answer a malformed handshake with 400/426 and a foreign origin of the agent socket with
    403, before the upgrade (the visitor socket's is refused once open); decline
    permessage-deflate."""
    if not _is_socket_request():
        return None
    refusal = upgrade.handshake_refusal(request.method, request.headers)
    if refusal is not None:
        return _refuse(refusal.status, refusal.text, refusal.headers)
    origin, own = request.headers.get("Origin"), current_app.extensions[OWN_ORIGINS]
    if request.path == AGENT_PATH:
        if not upgrade.console_origin(origin, request.host, own):
            return _refuse(403, "the agent socket opens only from the console's own pages")
    elif not upgrade.origin_allowed(origin, tuple(current_app.config.get("ALLOWED_ORIGINS")
                                                  or ()), own):
        # Opened, told why and closed with 1008 (docs/protocol.md, "Origin"): a browser never
        # shows a script the status of a refused upgrade, so a 403 would look like a network
        # that fails, retried for ever, where 1008 tells the widget to stop and say so.
        request.environ[REFUSED_ORIGIN] = origin
    # Chat frames are small, and compression costs ~100 KB a socket (docs/protocol.md); RFC 7692
    # lets a server decline it, which it does by not seeing the offer.
    request.environ.pop("HTTP_SEC_WEBSOCKET_EXTENSIONS", None)
    if current_app.extensions.get(live.EXTENSION) is None:
        return _refuse(503, "no Redis configured")
    return None


@contextmanager
def admitted(ws: Any, address_limits: limits.AddressLimits, address: str
             ) -> Iterator[str | None]:
    """Hold the socket's place in its address's count; yield the address, or None for a
    socket past the limit, which is closed with 1013 at once (a browser sees a close code,
    never the status of a refused upgrade)."""
    with address_limits.socket(address) as allowed:
        if not allowed:
            ws.close(reason=frames.CLOSE_TRY_LATER, message=limits.TOO_MANY_SOCKETS)
        yield address if allowed else None


@sock.route("/ws/visitor", bp=bp)
def visitor_socket(ws: Any) -> None:
    if (origin := request.environ.get(REFUSED_ORIGIN)) is not None:
        _refuse_origin(ws, origin)
        return
    # The session goes on in a greenlet of its own, on a copy of the socket, and this one
    # returns with the request (web/transport.py, `hand_off`): ~8 KB less a waiting socket.
    services = live.current_live()
    services.sessions.spawn(_visitor_session, transport.hand_off(ws), services,
                            limits.current(), request.remote_addr or "unknown")


def _visitor_session(ws: Any, services: live.Live, address_limits: limits.AddressLimits,
                     address: str) -> None:
    try:
        with admitted(ws, address_limits, address) as allowed:
            if allowed is not None:
                visitor.serve(ws, services, address_limits, address)
    except ConnectionClosed:
        pass
    except Exception:  # noqa: BLE001 - no request is left to answer with a 500
        log.exception("a visitor socket failed")
    finally:
        try:
            ws.sock.close()  # the dup: the connection ends with it
        except OSError:
            pass


def _refuse_origin(ws: Any, origin: str) -> None:
    """Tell a page of an origin not allowed why it gets no chat, close with 1008, and tell the
    operator (once a minute per origin and worker: a busy site would flood the log)."""
    now = time.monotonic()
    shown = origin[:SHOWN_ORIGIN_CHARS].encode("ascii", "backslashreplace").decode()
    if now - _origins_told.get(shown, -REFUSED_LOG_S) >= REFUSED_LOG_S:
        if len(_origins_told) >= 1_000:
            _origins_told.clear()
        _origins_told[shown] = now
        log.warning("refused a visitor socket from origin %r: not in ALLOWED_ORIGINS (%s)",
                    shown, ", ".join(current_app.config.get("ALLOWED_ORIGINS") or ())
                    or "unset: only this server's own origins")
    try:
        ws.send(frames.dump(frames.error(frames.FORBIDDEN, ORIGIN_REFUSED)))
        ws.close(reason=frames.CLOSE_POLICY, message="origin not allowed")
    except ConnectionClosed:
        return
    transport.await_close_reply(ws)


@sock.route(AGENT_PATH, bp=bp)
def agent_socket(ws: Any) -> None:
    with admitted(ws, limits.current(), request.remote_addr or "unknown") as address:
        if address is None:
            return
        parts = live.current_live()
        try:
            found = _agent_credential()
        except (redis_lib.RedisError, OSError):
            ws.close(reason=frames.CLOSE_TRY_LATER, message="storage unavailable, try again later")
            return
        if found is None:
            ws.close(reason=frames.CLOSE_POLICY, message=LOG_IN)
            return
        account, still_allowed, session_id = found
        agent.serve(ws, parts, account, still_allowed, session_id)


def _agent_credential() -> tuple[Any, Any, str | None] | None:
    """Return (the agent, a check that its credential still holds, its console session id or
    None for an API token), or None without a credential."""
    agent_id = auth.agent_of_request()
    accounts = auth.current_accounts()
    account = accounts.get(agent_id) if agent_id and accounts is not None else None
    if account is None:
        return None
    if current_user.is_authenticated:
        session_id = current_user.session_id
        return account, lambda: accounts.session_agent(session_id) == account.id, session_id
    token = auth.request_token()
    return (account, lambda: (found := accounts.token_agent(token)) is not None and
            found.id == account.id, None)

