"""Serve one socket from its start to its end: listed for shutdown, checked, nothing escaping.

An exception escaping a flask-sock handler would make Flask write an HTTP 500
into the upgraded socket (docs/operating.md, "Sockets and shutdown"): both
sockets run their session inside `guarded`, which catches everything, closes
with the code docs/protocol.md gives, and forgets the socket's subscriptions.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import redis as redis_lib
from simple_websocket import ConnectionClosed

from chat import frames
from runtime.wiring import Live

from .transport import Transport

log = logging.getLogger("concierge.sockets")

UNAVAILABLE = "storage unavailable, try again later"


def guarded(ws: Any, live: Live, label: str, session: Callable[[Transport], None]) -> None:
    """Run `session(transport)` on `ws` until the socket closes; nothing escapes."""
    transport = Transport(ws, label)
    live.hub.register(transport)
    live.start_timers()  # normally started with the worker; here for any other server
    try:
        if live.hub.stopping:
            transport.close(frames.CLOSE_GOING_AWAY, "server restarting")
        elif not live.redis_answers():
            transport.close(frames.CLOSE_TRY_LATER, UNAVAILABLE)
        else:
            session(transport)
    except ConnectionClosed:
        pass
    except (redis_lib.RedisError, OSError) as exc:
        log.warning("%s socket: Redis failed (%s); closing with 1013", label, exc)
        transport.close(frames.CLOSE_TRY_LATER, UNAVAILABLE)
    except Exception:  # noqa: BLE001 - an escaping error would corrupt the socket
        log.exception("%s socket failed", label)
        transport.close(frames.CLOSE_ERROR, "unexpected server error")
    finally:
        live.hub.forget(transport)
        transport.close(frames.CLOSE_NORMAL)
