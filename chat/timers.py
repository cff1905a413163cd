"""Timers that work with many workers and no leader: wake-ups kept in Redis, swept by anyone.

A conversation whose flow sets `idle_timeout` gets a deadline with every bot
turn that waits for the visitor. The deadline itself is a field of the
conversation's record, written by the turn's own fenced store (so a turn that
lost its lock cannot move it); this module keeps the wake-ups: one sorted set
that every worker sweeps about once a second. Taking due entries is one script
(read and remove together), so each wake-up fires once, on whichever worker
took it, and one armed again meanwhile is never taken by mistake. A wake-up is
only a hint: the turn it starts checks the record's deadline under the lock,
so a stale or stray one does nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import gevent
import redis as redis_lib

from . import scripts

log = logging.getLogger("concierge.timers")

IDLE_DEADLINES = "{prefix}timers:idle"  # sorted set: conversation id -> unix time to look
SWEEP_EVERY_S = 1.0  # idle timeouts are minutes long; a second late is fine
SWEEP_BATCH = 100  # deadlines taken per round; more wait for the next one


class IdleTimers:
    """Arm, disarm and sweep the idle deadlines of conversations."""

    def __init__(self, redis: redis_lib.Redis, prefix: str) -> None:
        self.redis = redis
        self.key = IDLE_DEADLINES.format(prefix=prefix)
        self._take = scripts.register(redis, "take_due.lua")
        self._started = False
        self._again: set[str] = set()  # fired, failed on Redis: to put back in the set
        self.stopping = False

    def arm(self, cid: str, after_s: float, only_if_unarmed: bool = False) -> None:
        """Wake up `after_s` seconds from now, unless armed again or disarmed before."""
        self.arm_at(cid, time.time() + after_s, only_if_unarmed)

    def arm_at(self, cid: str, at: float, only_if_unarmed: bool = False) -> None:
        """Wake up at unix time `at`."""
        self.redis.execute_command(*self.arm_command(cid, at, only_if_unarmed))

    def arm_command(self, cid: str, at: float, only_if_unarmed: bool = False
                    ) -> tuple[Any, ...]:
        """The command that arms a wake-up, to send with others (its key second)."""
        return ("ZADD", self.key, *(("NX",) if only_if_unarmed else ()), at, cid)

    def disarm(self, cid: str) -> None:
        self.redis.zrem(self.key, cid)

    def take_due(self, now: float | None = None) -> list[str]:
        """Take the conversations whose deadline has passed; each is taken by one caller only."""
        return self._take(keys=[self.key], args=[now or time.time(), SWEEP_BATCH])

    def start(self, fire: Callable[[str], None]) -> None:
        """Sweep in this worker from now on, calling `fire(cid)` for each due conversation."""
        if self._started:
            return
        self._started = True
        gevent.spawn(self._sweep, fire)

    def _sweep(self, fire: Callable[[str], None]) -> None:
        failing = False
        while not self.stopping:
            try:
                self.sweep_once(fire)
                if failing:
                    log.info("sweeping idle timers again")
                failing = False
            except (redis_lib.RedisError, OSError) as exc:
                if not failing:  # once per outage, not once a second
                    log.warning("cannot sweep idle timers (%s); retrying every %g s", exc,
                                SWEEP_EVERY_S)
                failing = True
            gevent.sleep(SWEEP_EVERY_S)

    def sweep_once(self, fire: Callable[[str], None]) -> list[gevent.Greenlet]:
        """Take the due wake-ups and fire each in a greenlet of its own; return those.

        A wake-up whose firing failed on Redis is put back first, due at once: taking it
        removed it from Redis, and nothing else would bring it back.
        """
        if self._again:
            again, self._again = self._again, set()
            try:
                self.redis.zadd(self.key, dict.fromkeys(again, time.time()), nx=True)
            except (redis_lib.RedisError, OSError):
                self._again |= again
                raise
        return [gevent.spawn(self._fire, fire, cid) for cid in self.take_due()]

    def _fire(self, fire: Callable[[str], None], cid: str) -> None:
        try:
            fire(cid)
        except (redis_lib.RedisError, OSError) as exc:
            log.warning("idle timer of %s failed (%s); it fires again once Redis answers",
                        cid, exc)
            self._again.add(cid)
        except Exception:  # noqa: BLE001 - one conversation's timer must not stop the others
            log.exception("idle timer of %s failed", cid)
