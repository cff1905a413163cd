"""Shared round trips: script calls that many greenlets make at once go to Redis together.

Under gevent a Redis round trip costs a worker far more than the command itself: the write,
the wait, the read and the switches around them, about a quarter of a millisecond of CPU on a
2-core machine, where the same script sent a hundred at a time in one pipeline costs a tenth
of that (docs/operating.md, "Shared round trips"). So a hot script call (a visitor's or an
agent's message being stored) does not take a connection of its own: it joins a queue, and
one caller at a time, the leader, sends everything queued in one write and reads the
replies back to their callers. While one batch is out, the next one gathers, so the busier
the worker, the bigger the batches and the cheaper each call; a lone call costs what it
always did. Only short scripts come here: a batch is as slow as its slowest call.

What each caller sees is what `Script(keys=…, args=…)` gives: the reply, or the exception
of its own call (an error reply fails that call alone). A connection that fails mid-batch
fails every call of that batch that has no reply yet, with that error: callers retry as they
would any lost round trip (the scripts sent here are idempotent: a message is stored once
per client id).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gevent
import gevent.event
import redis as redis_lib
from redis.commands.core import Script

MAX_BATCH = 256  # calls sent in one write; a longer queue goes in the next batch


class _Call:
    """One queued script call and where its reply goes."""

    __slots__ = ("script", "command", "done", "pending", "reply", "error", "lead")

    def __init__(self, script: Script, command: tuple[Any, ...]) -> None:
        self.script = script
        self.command = command
        self.done = gevent.event.Event()  # set once the batch is over: a reply, or an error
        self.pending = True  # no reply read yet
        self.reply: Any = None
        self.error: BaseException | None = None
        self.lead = False  # woken to send the next batch, not with a reply


class Coalescer:
    """Send the script calls queued by a worker's greenlets in shared round trips."""

    def __init__(self, redis: redis_lib.Redis) -> None:
        self.redis = redis
        self._queue: list[_Call] = []
        self._leading = False  # a batch is out (or its leader is about to send it)

    def wrap(self, script: Script) -> _Shared:
        """Return `script` as a callable that shares round trips, called like the Script."""
        return _Shared(self, script)

    def call(self, script: Script, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        entry = _Call(script, ("EVALSHA", script.sha, len(keys), *keys, *args))
        self._queue.append(entry)
        if not self._leading:
            self._leading = True
            # Let the greenlets this turn of the event loop woke (other sockets' frames) queue
            # their calls first: they go in this batch instead of waiting for the next.
            gevent.sleep(0)
            self._lead()
        else:
            try:
                entry.done.wait()
            except BaseException:  # killed while waiting (its socket closed, say)
                if entry.lead:  # handed the lead just now: someone must still send the queue
                    gevent.spawn(self._lead)
                elif entry in self._queue:  # not sent yet: never made the leader, never sent
                    self._queue.remove(entry)
                raise
            if entry.lead:  # the last batch is back and this call was first in the queue
                self._lead()
        if entry.error is not None:
            raise entry.error
        return entry.reply

    def _lead(self) -> None:
        """Send what is queued (this caller's own call first) and hand on the lead."""
        batch = self._queue[:MAX_BATCH]
        del self._queue[:MAX_BATCH]
        try:
            try:
                self._send(batch)
            except _Stale:
                # A connection that went stale (Redis restarted, a proxy dropped it) fails its
                # first use: once more on a fresh one, as redis-py retries a call of its own.
                self._send([entry for entry in batch if entry.pending])
            unknown = [entry for entry in batch
                       if isinstance(entry.error, redis_lib.exceptions.NoScriptError)]
            if unknown:
                # Redis lost its scripts (a restart, SCRIPT FLUSH) or never had them: load each
                # once and send its calls again, as redis-py does for a call of its own.
                for script in {id(entry.script): entry.script for entry in unknown}.values():
                    self.redis.script_load(script.script)
                for entry in unknown:
                    entry.error, entry.pending = None, True
                self._send(unknown)
        except BaseException as exc:  # noqa: BLE001 - told to every call still waiting
            if isinstance(exc, _Stale):
                exc = exc.__cause__
            for entry in batch:
                if entry.pending:
                    entry.error = exc if isinstance(exc, redis_lib.RedisError) else \
                        redis_lib.ConnectionError(f"the shared round trip failed: {exc!r}")
            if not isinstance(exc, (redis_lib.RedisError, OSError)):
                raise
        finally:
            for entry in batch:  # only now: a call is over once its batch is
                entry.done.set()
            if self._queue:
                head = self._queue[0]
                head.lead = True  # still leading: nobody else may send until it does
                head.done.set()
            else:
                self._leading = False

    def _send(self, batch: list[_Call]) -> None:
        """Send a batch in one write and read its replies into its calls.

        Raises the pool's error if no connection is free, and _Stale (from the connection's
        error) if the connection fails.
        """
        if not batch:
            return
        pool = self.redis.connection_pool
        connection = pool.get_connection()
        try:
            connection.send_packed_command(
                connection.pack_commands([entry.command for entry in batch]))
            for entry in batch:
                try:
                    entry.reply = connection.read_response()
                except redis_lib.ResponseError as exc:  # that call's own error reply
                    entry.error = exc
                entry.pending = False
        except (redis_lib.ConnectionError, OSError) as exc:
            connection.disconnect()  # replies would be out of step with their calls
            raise _Stale() from exc
        except BaseException:
            connection.disconnect()
            raise
        finally:
            pool.release(connection)


class _Stale(Exception):
    """The connection of a batch failed; its cause is the connection's error."""


class _Shared:
    """A script whose calls share round trips with the worker's other calls."""

    __slots__ = ("coalescer", "script")

    def __init__(self, coalescer: Coalescer, script: Script) -> None:
        self.coalescer = coalescer
        self.script = script

    def __call__(self, keys: Sequence[Any] = (), args: Sequence[Any] = ()) -> Any:
        return self.coalescer.call(self.script, keys, args)
