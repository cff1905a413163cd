"""Every WebSocket frame of PROTOCOL.md: built here, and incoming ones parsed here."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

# error codes of PROTOCOL.md
BAD_FRAME, UNKNOWN_TYPE, TOO_LONG, RATE_LIMITED = "bad_frame", "unknown_type", "too_long", \
    "rate_limited"
NOT_FOUND, FORBIDDEN, CONFLICT, UNAVAILABLE = "not_found", "forbidden", "conflict", "unavailable"

# close codes the server uses (PROTOCOL.md)
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001  # the server is shutting down: reconnect
CLOSE_POLICY = 1008  # refused origin or failed auth
CLOSE_TOO_BIG = 1009
CLOSE_ERROR = 1011  # an unexpected server error: reconnect
CLOSE_TRY_LATER = 1013  # overloaded, or Redis unreachable

MAX_ID_CHARS = 100  # a client message id; uuids are 36
MAX_FIELD_CHARS = 2_000  # names, page urls and titles


class FrameError(Exception):
    """An incoming frame breaks a rule; becomes an `error` frame."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def now_iso() -> str:
    """Return the time as PROTOCOL.md writes it: ISO 8601 UTC with milliseconds."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def dump(frame: Mapping[str, Any]) -> str:
    return json.dumps(frame, ensure_ascii=False, separators=(",", ":"))


# --- server -> client ----------------------------------------------------------------------


def error(code: str, message: str) -> dict[str, Any]:
    return {"type": "error", "code": code, "message": message}


def welcome(token: str, conversation: str, status: str) -> dict[str, Any]:
    return {"type": "welcome", "token": token, "conversation": conversation, "status": status}


def ack(message_id: str, seq: int) -> dict[str, Any]:
    return {"type": "ack", "id": message_id, "seq": seq}


def status(conversation: str, value: str, **details: Any) -> dict[str, Any]:
    """Build a `status` frame: bot, queued (position, wait_s), agent (agent), closed (reason)."""
    return {"type": "status", "conversation": conversation, "status": value, **details}


def typing(conversation: str, sender: str, active: bool) -> dict[str, Any]:
    return {"type": "typing", "conversation": conversation, "from": sender, "active": active}


def pong() -> dict[str, Any]:
    return {"type": "pong"}


def message(conversation: str, sender: str, text: str, *, message_id: str, name: str | None = None,
            buttons: list[dict[str, str]] | None = None, payload: str | None = None,
            ts: str | None = None) -> dict[str, Any]:
    """Build a `message` frame without its `seq` (the store gives it one)."""
    frame: dict[str, Any] = {"type": "message", "conversation": conversation, "id": message_id,
                             "from": sender, "text": text, "ts": ts or now_iso()}
    if name:
        frame["name"] = name
    if buttons:
        frame["buttons"] = buttons
    if payload is not None:
        frame["payload"] = payload
    return frame


# --- client -> server ----------------------------------------------------------------------

VISITOR_TYPES = ("hello", "message", "typing", "end", "rating", "leave_queue", "ping")


def parse(raw: str | bytes, max_text: int) -> dict[str, Any]:
    """Parse and validate one visitor frame; raise FrameError saying what to fix."""
    if isinstance(raw, bytes):
        raise FrameError(BAD_FRAME, "send frames as text, not binary")
    try:
        frame = json.loads(raw)
    except ValueError:
        raise FrameError(BAD_FRAME, "a frame must be one JSON object") from None
    if not isinstance(frame, dict):
        raise FrameError(BAD_FRAME, "a frame must be a JSON object")
    kind = frame.get("type")
    if not isinstance(kind, str):
        raise FrameError(BAD_FRAME, "a frame needs a string 'type'")
    if kind not in VISITOR_TYPES:
        raise FrameError(UNKNOWN_TYPE, f"unknown frame type '{kind[:40]}' "
                                       f"(known: {', '.join(VISITOR_TYPES)})")
    checker = _CHECKS.get(kind)
    if checker:
        checker(frame, max_text)
    return frame


def _field(frame: dict[str, Any], name: str, kinds: type | tuple[type, ...], *,
           required: bool = False, what: str = "") -> Any:
    if name not in frame or frame[name] is None:
        if required:
            raise FrameError(BAD_FRAME, f"'{frame['type']}' needs '{name}'{what}")
        return None
    value = frame[name]
    allowed = kinds if isinstance(kinds, tuple) else (kinds,)
    if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
        expected = " or ".join(_TYPE_NAMES[k] for k in allowed)
        raise FrameError(BAD_FRAME, f"'{name}' of '{frame['type']}' must be {expected}")
    return value


_TYPE_NAMES = {str: "a string", int: "a whole number", dict: "an object", bool: "true or false"}


def _short(frame: dict[str, Any], name: str, limit: int = MAX_FIELD_CHARS) -> None:
    value = frame.get(name)
    if isinstance(value, str) and len(value) > limit:
        raise FrameError(TOO_LONG, f"'{name}' is longer than {limit} characters")


def _hello(frame: dict[str, Any], _max_text: int) -> None:
    _field(frame, "token", str)
    last = _field(frame, "last_seq", int)
    if last is not None and last < 0:
        raise FrameError(BAD_FRAME, "'last_seq' must be 0 or more")
    _field(frame, "flow", str)
    _short(frame, "flow", 100)
    _field(frame, "locale", str)
    _short(frame, "locale", 35)
    for part, fields in (("identity", ("user_id", "name", "email", "hash")),
                         ("page", ("url", "title", "referrer"))):
        data = _field(frame, part, dict)
        for key in fields if data else ():
            value = data.get(key)
            if value is not None and not isinstance(value, str):
                raise FrameError(BAD_FRAME, f"'{part}.{key}' of 'hello' must be a string")
            if isinstance(value, str) and len(value) > MAX_FIELD_CHARS:
                raise FrameError(TOO_LONG, f"'{part}.{key}' is longer than {MAX_FIELD_CHARS} "
                                           "characters")


def _message(frame: dict[str, Any], max_text: int) -> None:
    text = _field(frame, "text", str, required=True)
    message_id = _field(frame, "id", str, required=True,
                        what=" (a client-made id, unique in the conversation)")
    _field(frame, "payload", str)
    _short(frame, "payload", 200)
    if not message_id or len(message_id) > MAX_ID_CHARS:
        raise FrameError(BAD_FRAME, f"'id' must be 1 to {MAX_ID_CHARS} characters")
    if len(text) > max_text:
        raise FrameError(TOO_LONG, f"the message is longer than {max_text} characters; "
                                   "split it up")
    if not text.strip() and frame.get("payload") is None:
        raise FrameError(BAD_FRAME, "the message is empty")


def _typing(frame: dict[str, Any], _max_text: int) -> None:
    _field(frame, "active", bool, required=True)


def _rating(frame: dict[str, Any], max_text: int) -> None:
    score = _field(frame, "score", int, required=True)
    if not 1 <= score <= 5:
        raise FrameError(BAD_FRAME, "'score' must be a whole number from 1 to 5")
    comment = _field(frame, "comment", str)
    if comment is not None and len(comment) > max_text:
        raise FrameError(TOO_LONG, f"the comment is longer than {max_text} characters")


_CHECKS = {"hello": _hello, "message": _message, "typing": _typing, "rating": _rating}
