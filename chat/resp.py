"""Redis's wire protocol for the hot paths: commands written and replies read in a few lines.

The worker's shared round trips (chat/coalesce.py) and its pub/sub reader (chat/pushes.py) are
where nearly every Redis call of a busy worker goes, and redis-py's packer and reply parser,
general and careful, cost them more than the calls' own work: a type check and an encoder per
argument, a buffered readline per reply element (docs/operating.md, "Shared round trips").
Here a command is packed once, in its caller (so an argument that cannot be sent fails that
call alone), and a read takes every whole reply that has come.

Replies are parsed as RESP2 or RESP3, whichever the connection speaks: strings decoded as UTF-8,
integers, null, booleans, doubles, arrays, sets and maps, pushes; an error reply is the
exception redis-py would raise for it (NoScriptError, MovedError, ResponseError…), returned,
not raised, so each call of a batch gets its own.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import redis as redis_lib
from redis._parsers.base import BaseParser

READ_BYTES = 65_536
_CRLF = b"\r\n"


class Incomplete(Exception):
    """The buffer ends inside a reply: the rest is still on its way."""


def pack(command: tuple[Any, ...]) -> bytes:
    """One command as Redis reads it. Raises redis.DataError for an argument Redis cannot take,
    and UnicodeEncodeError for text with no UTF-8 (a lone surrogate)."""
    parts = [b"*%d\r\n" % len(command)]
    for arg in command:
        if isinstance(arg, str):
            data = arg.encode()
        elif isinstance(arg, bytes):
            data = arg
        elif isinstance(arg, int) and not isinstance(arg, bool):
            data = b"%d" % arg
        elif isinstance(arg, float):
            data = repr(arg).encode()
        else:
            raise redis_lib.DataError(f"cannot send {type(arg).__name__} to Redis: {arg!r}")
        parts.append(b"$%d\r\n" % len(data))
        parts.append(data)
        parts.append(_CRLF)
    return b"".join(parts)


def parse(buffer: bytes, at: int) -> tuple[Any, int]:
    """Parse the reply that starts at `at`: (its value, where the next begins). Raises
    Incomplete when the buffer ends first."""
    end = buffer.find(_CRLF, at)
    if end < 0:
        raise Incomplete
    kind, head = buffer[at], buffer[at + 1:end]
    at = end + 2
    if kind == 36 or kind == 61 or kind == 33:  # $ bulk, = verbatim, ! bulk error
        size = int(head)
        if size < 0:
            return None, at
        if len(buffer) < at + size + 2:
            raise Incomplete
        text = buffer[at:at + size].decode("utf-8", "replace")
        at += size + 2
        if kind == 61:
            return text[4:], at  # "txt:" or "mkd:" first
        if kind == 33:
            return BaseParser.parse_error(text), at
        return text, at
    if kind == 42 or kind == 62 or kind == 126:  # * array, > push, ~ set
        size = int(head)
        if size < 0:
            return None, at
        items = []
        for _ in range(size):
            item, at = parse(buffer, at)
            items.append(item)
        return items, at
    if kind == 58:  # : integer
        return int(head), at
    if kind == 43:  # + simple string
        return head.decode("utf-8", "replace"), at
    if kind == 45:  # - error
        return BaseParser.parse_error(head.decode("utf-8", "replace")), at
    if kind == 95:  # _ null
        return None, at
    if kind == 35:  # # boolean
        return head == b"t", at
    if kind == 44:  # , double
        return float(head), at
    if kind == 40:  # ( big number
        return int(head), at
    if kind == 37:  # % map
        pairs = {}
        for _ in range(int(head)):
            key, at = parse(buffer, at)
            value, at = parse(buffer, at)
            pairs[key] = value
        return pairs, at
    raise redis_lib.ConnectionError(f"unexpected reply from Redis, starting {bytes([kind])!r}")


def read_replies(connection: Any, count: int, take: Callable[[int, Any], None]) -> None:
    """Read the replies to the `count` commands just sent on a redis-py connection, handing
    each to `take(index, reply)` as it comes (an error reply is its exception, handed over).
    On a failure the connection is disconnected (its replies would be out of step) and the
    error raised, as redis-py's own read does: ConnectionError, or TimeoutError after the
    connection's socket timeout."""
    sock = connection._sock
    if sock is None:
        raise redis_lib.ConnectionError("the connection is closed")
    done = 0
    buffer, at = b"", 0
    try:
        while done < count:
            data = sock.recv(READ_BYTES)
            if not data:
                raise redis_lib.ConnectionError("Redis closed the connection")
            buffer = buffer[at:] + data if at else buffer + data
            at = 0
            try:
                while done < count:
                    reply, at = parse(buffer, at)
                    take(done, reply)
                    done += 1
            except Incomplete:
                pass
        if at != len(buffer):
            raise redis_lib.ConnectionError("Redis sent more replies than were asked for")
    except TimeoutError as exc:  # the socket's timeout (socket.timeout is TimeoutError)
        connection.disconnect()
        raise redis_lib.TimeoutError("Timeout reading from Redis") from exc
    except (OSError, redis_lib.ConnectionError, ValueError) as exc:
        connection.disconnect()
        if isinstance(exc, redis_lib.ConnectionError):
            raise
        raise redis_lib.ConnectionError(f"Error while reading from Redis: {exc!r}") from exc
    except BaseException:  # killed mid-read: what is left of the replies is unknown
        connection.disconnect()
        raise
    if connection.health_check_interval:  # as redis-py's read does: no PING while in use
        connection.next_health_check = time.monotonic() + connection.health_check_interval
