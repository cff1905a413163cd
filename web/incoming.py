"""Parse and validate what a client sends, one frame at a time, by role: visitor or agent.

Every frame a socket reads comes through `parse`, which returns the frame as a dict or raises
FrameError with a code of the protocol and a message saying what to fix. What it refuses never
reaches the conversation: text that cannot be stored (a lone UTF-16 surrogate), nesting deeper
than any frame needs, wrongly typed or missing fields, values over their limits. Its messages
never echo what the client sent, except a frame's unknown `type`, cut short and made printable.
The rules are written for clients in docs/protocol.md. This module is a little over 300 lines on
purpose: every rule a client frame must follow, of both roles, is here, to be read in one place.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from itertools import accumulate
from typing import Any

from chat.frames import BAD_FRAME, TOO_LONG, UNKNOWN_TYPE

VISITOR, AGENT = "visitor", "agent"

MAX_DEPTH = 32  # levels of objects and lists in a frame; the protocol's deepest has 2
MAX_ID_CHARS = 100  # a client message id (uuids are 36) or a conversation id
MAX_FIELD_CHARS = 2_000  # names, page urls and titles, a transfer's note
MAX_NAME_CHARS = 100  # an agent id, a queue's name, a flow's state
MAX_TAGS = 20  # tags on one closed conversation
MAX_TAG_CHARS = 50  # one tag: a word or two ("refund", "shipping delay")
SHOWN_TYPE_CHARS = 40  # of an unknown `type`, quoted back in the error


class FrameError(Exception):
    """An incoming frame breaks a rule; becomes an `error` frame.

    `about` says which frame it answers, once that much of it could be read: its `request`
    (type) and, for a message, its `id`, so a client can tell which of its messages failed.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.about: dict[str, str] = {}


Check = Callable[[dict[str, Any], int], None]


def parse(raw: str | bytes, role: str, max_text: int) -> dict[str, Any]:
    """Parse and validate one frame a `role` client sent; raise FrameError saying what to fix."""
    if isinstance(raw, bytes):
        raise FrameError(BAD_FRAME, "send frames as text, not binary")
    checks = _ROLES[role]
    # Cheap first: only a frame with more brackets than the bound can be nested too deeply, and
    # most frames hold one brace and no bracket (finding that is ten times quicker than counting).
    if ("[" in raw or "{" in raw[1:]) and raw.count("{") + raw.count("[") > MAX_DEPTH:
        _check_depth(raw)
    try:
        frame = json.loads(raw)
    except json.JSONDecodeError:
        raise FrameError(BAD_FRAME, "a frame must be one JSON object") from None
    except ValueError:  # Python refuses integers of more than 4,300 digits
        raise FrameError(BAD_FRAME, "a number in the frame is too long; send it as a string "
                                    "or shorter") from None
    if not isinstance(frame, dict):
        raise FrameError(BAD_FRAME, "a frame must be a JSON object")
    kind = frame.get("type")
    try:
        # A WebSocket text frame is valid UTF-8, so only a \uD800-\uDFFF escape can make a lone
        # surrogate (JSON has no \U escape); most frames hold no backslash at all.
        if "\\" in raw and _SURROGATE_ESCAPE.search(raw):
            _check_encodable(frame)
        if not isinstance(kind, str):
            raise FrameError(BAD_FRAME, "a frame needs a string 'type'")
        if kind not in checks:
            raise FrameError(UNKNOWN_TYPE, f"unknown frame type '{_shown(kind)}' "
                                           f"(known: {', '.join(checks)})")
        check = checks[kind]
        if check is not None:
            check(frame, max_text)
    except FrameError as exc:
        if isinstance(kind, str) and kind in checks:  # a type of ours: safe to name
            exc.about = about(frame)
        raise
    return frame


def about(frame: dict[str, Any]) -> dict[str, str]:
    """Name the frame an error answers: its type and, when it has a usable one, its `id`."""
    named = {"request": frame["type"]}
    message_id = frame.get("id")
    if isinstance(message_id, str) and 0 < len(message_id) <= MAX_ID_CHARS:
        named["id"] = message_id  # as the ack repeats it: the client's own id
    return named


# --- what no frame may hold -------------------------------------------------------------------

_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")  # half of a UTF-16 pair, or a lone one
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_DEPTH_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def _check_depth(raw: str) -> None:
    """Refuse a frame nested deeper than MAX_DEPTH, without parsing it (brackets in strings
    do not count); linear in the frame's length, and in C but for the last step."""
    if "\\" in raw:  # escaped backslashes first, so that `\\"` still ends its string
        raw = raw.replace("\\\\", "").replace('\\"', "")
    outside_strings = "".join(raw.split('"')[::2])
    brackets = _NOT_BRACKET.sub("", outside_strings)
    if max(accumulate(map(_DEPTH_STEP.__getitem__, brackets)), default=0) > MAX_DEPTH:
        raise FrameError(BAD_FRAME, f"a frame may be nested at most {MAX_DEPTH} levels deep")


_PLAIN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,39}")  # a field name fit to quote back
SHOWN_PATH_CHARS = 100  # of the path to a bad string (`identity.name`), quoted back


def _check_encodable(frame: dict[str, Any]) -> None:
    """Refuse a frame holding a string, key or value, that cannot be encoded as UTF-8."""
    try:
        _walk(frame, ())
    except _LoneSurrogate as lone:
        raise FrameError(BAD_FRAME, f"{_where(lone.path, lone.in_key)} holds a lone UTF-16 "
                                    f"surrogate (\\u{lone.char:04x}); send whole characters"
                         ) from None


class _LoneSurrogate(Exception):
    """Where the walk met a string that cannot be encoded, and the code point that failed."""

    def __init__(self, path: tuple[str | int, ...], char: int, in_key: bool) -> None:
        super().__init__()
        self.path = path
        self.char = char
        self.in_key = in_key


def _walk(value: Any, path: tuple[str | int, ...]) -> None:
    if isinstance(value, str):
        if not value.isascii():  # quick, and an ASCII string always encodes
            try:
                value.encode()
            except UnicodeEncodeError as exc:  # a str can fail only on a lone surrogate
                raise _LoneSurrogate(path, ord(value[exc.start]), in_key=False) from None
    elif isinstance(value, dict):
        for key, item in value.items():
            if not key.isascii():
                try:
                    key.encode()
                except UnicodeEncodeError as exc:
                    raise _LoneSurrogate(path, ord(key[exc.start]), in_key=True) from None
            _walk(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _walk(item, (*path, index))


def _where(path: tuple[str | int, ...], in_key: bool) -> str:
    """Name a place in the frame (`'identity.name'`) without quoting odd client text."""
    where = ""
    for part in path:
        if isinstance(part, int):
            where += f"[{part}]"
        else:
            where += ("." if where else "") + (part if _PLAIN_NAME.fullmatch(part) else "…")
    if len(where) > SHOWN_PATH_CHARS:
        where = "…" + where[-SHOWN_PATH_CHARS:]
    if in_key:
        return f"a field name in '{where}'" if where else "a field name"
    return f"'{where}'"


def _shown(text: str) -> str:
    """Return client text fit to quote in an error: short, printable, encodable."""
    cut = "".join(char if char.isprintable() and not "\ud800" <= char <= "\udfff" else "?"
                  for char in text[:SHOWN_TYPE_CHARS])
    return cut + "…" if len(text) > SHOWN_TYPE_CHARS else cut


# --- fields -----------------------------------------------------------------------------------

_TYPE_NAMES = {str: "a string", int: "a whole number", dict: "an object", bool: "true or false",
               list: "a list"}


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


def _short(frame: dict[str, Any], name: str, limit: int = MAX_FIELD_CHARS) -> None:
    value = frame.get(name)
    if isinstance(value, str) and len(value) > limit:
        raise FrameError(TOO_LONG, f"'{name}' is longer than {limit} characters")


# --- the visitor's frames ---------------------------------------------------------------------


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


def _message(frame: dict[str, Any], max_text: int, *, payload: bool) -> None:
    """Check a message of either side; only a visitor's may carry a button's `payload`."""
    text = _field(frame, "text", str, required=True)
    message_id = _field(frame, "id", str, required=True,
                        what=" (a client-made id, unique in the conversation)")
    if payload:
        _field(frame, "payload", str)
        _short(frame, "payload", 200)
    if not message_id or len(message_id) > MAX_ID_CHARS:
        raise FrameError(BAD_FRAME, f"'id' must be 1 to {MAX_ID_CHARS} characters")
    if len(text) > max_text:
        raise FrameError(TOO_LONG, f"the message is longer than {max_text} characters; "
                                   "split it up")
    if not text.strip() and (not payload or not frame.get("payload")):
        raise FrameError(BAD_FRAME, "the message is empty: send its text, or a button's "
                                    "payload with its title as text")


def _visitor_message(frame: dict[str, Any], max_text: int) -> None:
    _message(frame, max_text, payload=True)


def _visitor_typing(frame: dict[str, Any], _max_text: int) -> None:
    _field(frame, "active", bool, required=True)


def _rating(frame: dict[str, Any], max_text: int) -> None:
    score = _field(frame, "score", int, required=True)
    if not 1 <= score <= 5:
        raise FrameError(BAD_FRAME, "'score' must be a whole number from 1 to 5")
    comment = _field(frame, "comment", str)
    if comment is not None and len(comment) > max_text:
        raise FrameError(TOO_LONG, f"the comment is longer than {max_text} characters")


VISITOR_CHECKS: dict[str, Check | None] = {
    "hello": _hello, "message": _visitor_message, "typing": _visitor_typing, "end": None,
    "rating": _rating, "leave_queue": None, "ping": None,
}


# --- the agent's frames -----------------------------------------------------------------------

PRESENCES = ("available", "away")
TRANSFER_TARGETS = ("agent", "queue", "bot")
TRANSFER_SHAPE = '{"agent": id}, {"queue": name} or {"bot": state}'


def _conversation(frame: dict[str, Any]) -> None:
    cid = _field(frame, "conversation", str, required=True, what=" (a conversation's id)")
    if not cid or len(cid) > MAX_ID_CHARS:
        raise FrameError(BAD_FRAME, f"'conversation' must be 1 to {MAX_ID_CHARS} characters")


def _presence(frame: dict[str, Any], _max_text: int) -> None:
    status = _field(frame, "status", str, required=True, what=": available or away")
    if status not in PRESENCES:
        raise FrameError(BAD_FRAME, "'status' of 'presence' must be available or away")


def _accept(frame: dict[str, Any], _max_text: int) -> None:
    _conversation(frame)


def _agent_message(frame: dict[str, Any], max_text: int) -> None:
    _conversation(frame)
    _message(frame, max_text, payload=False)


def _agent_typing(frame: dict[str, Any], _max_text: int) -> None:
    _conversation(frame)
    _field(frame, "active", bool, required=True)


def _transfer(frame: dict[str, Any], _max_text: int) -> None:
    _conversation(frame)
    target = _field(frame, "to", dict, required=True, what=f": {TRANSFER_SHAPE}")
    if len(target) != 1 or next(iter(target)) not in TRANSFER_TARGETS:
        raise FrameError(BAD_FRAME, f"'to' of 'transfer' must be exactly one of {TRANSFER_SHAPE}")
    kind, name = next(iter(target.items()))
    if not isinstance(name, str) or not name:
        raise FrameError(BAD_FRAME, f"'to.{kind}' of 'transfer' must be a non-empty string")
    if len(name) > MAX_NAME_CHARS:
        raise FrameError(TOO_LONG, f"'to.{kind}' is longer than {MAX_NAME_CHARS} characters")
    _field(frame, "note", str)
    _short(frame, "note")


def _close(frame: dict[str, Any], _max_text: int) -> None:
    _conversation(frame)
    tags = _field(frame, "tags", list)
    if tags is None:
        return
    if len(tags) > MAX_TAGS:
        raise FrameError(TOO_LONG, f"a conversation takes at most {MAX_TAGS} tags")
    for tag in tags:
        if not isinstance(tag, str) or not tag.strip():
            raise FrameError(BAD_FRAME, "each of 'tags' must be a non-empty string")
        if len(tag) > MAX_TAG_CHARS:
            raise FrameError(TOO_LONG, f"a tag is longer than {MAX_TAG_CHARS} characters")


def _history(frame: dict[str, Any], _max_text: int) -> None:
    _conversation(frame)
    before = _field(frame, "before_seq", int, required=True)
    if before < 1:
        raise FrameError(BAD_FRAME, "'before_seq' must be 1 or more")


AGENT_CHECKS: dict[str, Check | None] = {
    "presence": _presence, "accept": _accept, "message": _agent_message,
    "typing": _agent_typing, "transfer": _transfer, "close": _close, "history": _history,
    "missed": None, "follow_up": _accept, "team": None, "colleagues": None, "ping": None,
}

_ROLES = {VISITOR: VISITOR_CHECKS, AGENT: AGENT_CHECKS}
