"""Read a client's frames off its socket: size and rate limits, parsing by role, errors.

Both sockets (web/visitor.py, web/agent.py) read through this, so a frame too
big, too fast or malformed gets the same answer on either (docs/protocol.md, "Limits").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chat import frames

from . import incoming
from .transport import RateLimit, Transport


class FrameReader:
    """Return a socket's valid frames one at a time, answering the bad ones."""

    def __init__(self, transport: Transport, role: str, config: dict[str, Any],
                 quiet: Callable[[], None], quiet_s: float) -> None:
        self.transport = transport
        self.role = role
        self.max_text = int(config["MAX_TEXT_CHARS"])
        self.max_frame_bytes = int(config["MAX_FRAME_BYTES"])
        self.rate = RateLimit(int(config["FRAME_RATE"]))
        # Frames that carry no message are limited too, at the same rate (web/transport.py)
        transport.control_rate = RateLimit(int(config["FRAME_RATE"]))
        self.quiet = quiet  # called when nothing came for quiet_s (the visitor's socket pings)
        self.quiet_s = quiet_s
        # What an unknown type is told instead (before its hello, a visitor is told to say it).
        self.unknown_hint: str | None = None

    def next(self) -> dict[str, Any] | None:
        """Return the next valid frame; None when the socket closed."""
        transport = self.transport
        while not transport.closed:
            raw = transport.receive(self.quiet_s)
            if raw is None:
                self.quiet()
                continue
            if len(raw) * 4 > self.max_frame_bytes and \
                    len(raw.encode() if isinstance(raw, str) else raw) > self.max_frame_bytes:
                # simple-websocket counts characters; the limit is in bytes (docs/protocol.md)
                transport.close(frames.CLOSE_TOO_BIG, "frame too big")
                return None
            if not self.rate.allow():
                transport.send(frames.error(
                    frames.RATE_LIMITED, f"more than {self.rate.rate:g} frames a second; "
                                         "slow down and send this again"))
                continue
            try:
                return incoming.parse(raw, self.role, self.max_text)
            except incoming.FrameError as exc:
                if self.unknown_hint and exc.code == incoming.UNKNOWN_TYPE:
                    exc = incoming.FrameError(incoming.BAD_FRAME, self.unknown_hint)
                transport.send(frames.error(exc.code, exc.message, **exc.about))
        return None
